"""A finished table as `results.json`, `results.md` (ours beside the paper's) and `results.png`.

`results.json`:
    {"table": NAME, "title": ..., "data": "synthetic" | DATA.yaml, "seeds": N, "rows": [
        {"row": NAME, "label": ..., "method": ..., "inference_modalities": [...],
         "teachers": {MODALITY: ROW}, "metrics": {METRIC: {"mean": x, "std": s, "values": [...]}},
         "paper": {DATASET: {...}}}],
     "provenance": {...}}  (written by `reproduce`, see `lightning_modules/reproduce/publish.py`)
Metric names are those of `crossdistill evaluate` (`frame_mAP`, `average_mAP`, `mAP@0.5`,
`top1`, `ece`, ...); `std` is the sample standard deviation over seeds (0 for one seed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning_modules.reproduce.recipe import Recipe

MAIN_METRICS = ("frame_mAP", "average_mAP", "action_top1", "top1")
"""The first of these that a row has is its main metric (the tasks' `main_metric`)."""


def summarise(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        if len(values) > 1
        else 0.0
    )
    return {"mean": mean, "std": std, "values": values}


def collect(recipe: Recipe, results_dir: Path, data: str, seeds_of: dict[str, int]) -> dict:
    """Gather every row's seed files into the `results.json` structure."""
    rows = []
    for row in recipe.rows:
        per_seed = [
            json.loads((results_dir / row.name / f"seed{seed}.json").read_text())["metrics"]
            for seed in range(seeds_of[row.name])
        ]
        names = [name for name in per_seed[0] if all(name in m for m in per_seed)]
        rows.append(
            {
                "row": row.name,
                "label": row.label,
                "method": row.method,
                "inference_modalities": list(row.inference),
                "teachers": dict(row.teachers),
                "metrics": {name: summarise([m[name] for m in per_seed]) for name in names},
                "paper": row.paper,
            }
        )
    return {
        "table": recipe.table,
        "title": recipe.title,
        "data": data,
        "seeds": recipe.seeds,
        "rows": rows,
    }


def main_metric(row: dict) -> str:
    for name in MAIN_METRICS:
        if name in row["metrics"]:
            return name
    return next(iter(row["metrics"]))


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def shown(summary: dict) -> str:
    """A metric in %, mean ± sample std over seeds; a single seed has no spread to show."""
    text = _percent(summary["mean"])
    if len(summary.get("values", ())) > 1:
        text += f" ± {_percent(summary['std'])}"
    return text


def markdown(results: dict, columns: tuple[str, ...] = ()) -> str:
    """The table: one line per row, ours (mean ± std over seeds, in %) beside the paper's."""
    datasets = sorted({d for row in results["rows"] for d in row["paper"]})
    lines = [f"### {results['title']}", ""]
    lines.append(
        f"Data: {results['data']}; {results['seeds']} seed(s); in %, mean ± sample std over "
        "seeds where there are several. Paper columns: "
        "published numbers on real benchmarks (not comparable in value, only in ordering)."
    )
    lines.append("")
    paper = [f"paper: {d}" for d in datasets]
    header = ["row", "method", "inference", "metric", "ours", *columns, *paper]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in results["rows"]:
        metric = main_metric(row)
        ours = shown(row["metrics"][metric])
        cells = [row["label"], row["method"], "+".join(row["inference_modalities"]), metric, ours]
        for column in columns:
            value = row["metrics"].get(column)
            cells.append(_percent(value["mean"]) if value else "")
        for dataset in datasets:
            published = row["paper"].get(dataset, {})
            cells.append(str(published.get(metric, "")) if published else "")
        lines.append("| " + " | ".join(cells) + " |")
    if made := made_by(results.get("provenance", {})):
        lines += ["", made]
    return "\n".join(lines) + "\n"


def made_by(provenance: dict) -> str:
    """One sentence: the commit, the machine and the wall time of the runs behind a table."""
    runs = provenance.get("invocations", [])
    if not runs:
        return ""
    commits = sorted({run["commit"][:7] for run in runs if "commit" in run})
    changes = [run.get("uncommitted_changes") for run in runs]
    changed = sorted({path for paths in changes if isinstance(paths, list) for path in paths})
    unnamed = any(paths is True for paths in changes)  # recorded before the files were named
    machine = runs[-1]["machine"]
    where = f"{machine['cpu']}, {machine['cores']} cores" + (
        f", {machine['gpu']}" if machine.get("gpu") else ""
    )
    minutes = provenance.get("wall_seconds", 0.0) / 60
    shown_minutes = f"{minutes:.1f}" if minutes < 10 else f"{minutes:.0f}"  # 7.5, not 8; 92
    return (
        f"Made by commit {', '.join(commits) or 'unknown'}"
        + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")
        + (" with uncommitted changes" if unnamed and not changed else "")
        + f" on {where} (torch {machine['torch']}): {shown_minutes} min wall time in"
        f" {len(runs)} invocation(s), {runs[-1]['lanes']} lane(s) of"
        f" {runs[-1]['threads']} thread(s)."
    )


_BEHIND_TEXT = {"facecolor": "white", "edgecolor": "none", "pad": 0.5}
ROLE_COLOURS = {"baseline": "tab:blue", "student": "tab:orange", "other": "tab:gray"}


def task_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by task, the prefix of their label before ":" ("Dense: RGB baseline"), in order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        task = row["label"].split(":")[0] if ":" in row["label"] else ""
        groups.setdefault(task, []).append(row)
    return groups


def role(row: dict) -> str:
    """`student` for an RGB-only row that distils (it has teachers), `baseline` for the other
    RGB-only rows (labels alone: the baseline, an RGB teacher), `other` for rows that read other
    modalities (teachers, two-stream)."""
    if row["inference_modalities"] != ["rgb"]:
        return "other"
    return "student" if row.get("teachers") else "baseline"


def plot(results: dict, path: Path) -> None:
    """A bar per row (main metric, mean over seeds, its value written beside it and the spread
    over seeds as an error bar when there are several), rows grouped by task (the label's prefix
    before ":"), RGB models of labels alone in blue (a dashed line through the group at its
    first, the baseline), the distilled RGB students in orange, the rows that read other
    modalities in grey.

    A bare `Figure` (no pyplot): it leaves the caller's backend alone (a notebook keeps inline
    plots) and needs no display."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    groups = task_groups(results["rows"])
    count = len(results["rows"]) + 2 * len(groups)
    figure = Figure(figsize=(9, 0.42 * count + 1.6), layout="constrained")
    axis = figure.subplots()
    position, ticks, labels = 0.0, [], []
    for task, rows in groups.items():
        if task:
            axis.text(0, position, task, fontweight="bold", va="center", ha="left")
            position += 1
        baseline = next((r for r in rows if role(r) == "baseline"), None)
        top = position
        for row in rows:
            summary = row["metrics"][main_metric(row)]
            mean, spread = 100 * summary["mean"], 100 * summary["std"]
            several = len(summary.get("values", ())) > 1
            colour = ROLE_COLOURS[role(row)]
            axis.barh(position, mean, color=colour, xerr=spread if several else None)
            right = mean + (spread if several else 0) + 1
            axis.text(right, position, shown(summary), va="center", fontsize=8, bbox=_BEHIND_TEXT)
            label = row["label"].split(":", 1)[1].strip() if task else row["label"]
            ticks.append(position)
            labels.append(f"{label} ({main_metric(row)})")
            position += 1
        if baseline is not None:
            value = 100 * baseline["metrics"][main_metric(baseline)]["mean"]
            colour = ROLE_COLOURS["baseline"]
            axis.vlines(value, top - 0.5, position - 0.5, colors=colour, linestyles="dashed")
        position += 1
    axis.set_yticks(ticks, labels)
    axis.set_ylim(position - 1, -1)
    axis.set_xlim(0, 112)
    axis.set_xlabel("%")
    figure.legend(  # below the bars, where no bar or value can be hidden under it
        handles=[
            Patch(color=ROLE_COLOURS["baseline"], label="RGB, labels only (dashed: the baseline)"),
            Patch(color=ROLE_COLOURS["student"], label="distilled RGB student"),
            Patch(color=ROLE_COLOURS["other"], label="teacher / other modalities"),
        ],
        loc="outside lower center",
        ncols=3,
        fontsize=8,
    )
    figure.suptitle(textwrap.fill(results["title"], 90), fontsize=10)
    figure.savefig(path, dpi=120)


def write(results: dict, out: Path, columns: tuple[str, ...] = ()) -> str:
    """Write the three files; returns the Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown(results, columns)
    (out / "results.md").write_text(table)
    plot(results, out / "results.png")
    return table
