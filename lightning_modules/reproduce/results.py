"""A finished table as `results.json`, `results.md` (ours beside the paper's) and `results.png`.

`results.json`:
    {"table": NAME, "title": ..., "data": "synthetic" | DATA.yaml, "seeds": N, "rows": [
        {"row": NAME, "label": ..., "method": ..., "inference_modalities": [...],
         "metrics": {METRIC: {"mean": x, "std": s, "values": [...]}}, "paper": {DATASET: {...}}}]}
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
        summary = row["metrics"][metric]
        ours = _percent(summary["mean"])
        if len(summary.get("values", ())) > 1:  # a single seed has no spread to show
            ours += f" ± {_percent(summary['std'])}"
        cells = [row["label"], row["method"], "+".join(row["inference_modalities"]), metric, ours]
        for column in columns:
            value = row["metrics"].get(column)
            cells.append(_percent(value["mean"]) if value else "")
        for dataset in datasets:
            published = row["paper"].get(dataset, {})
            cells.append(str(published.get(metric, "")) if published else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """A bar per row (main metric, error bar = std over seeds), coloured by inference modality.

    A bare `Figure` (no pyplot): it leaves the caller's backend alone (a notebook keeps inline
    plots) and needs no display."""
    from matplotlib.figure import Figure

    rows = results["rows"]
    labels = [f"{row['label']} ({main_metric(row)})" for row in rows]
    means = [100 * row["metrics"][main_metric(row)]["mean"] for row in rows]
    stds = [100 * row["metrics"][main_metric(row)]["std"] for row in rows]
    colours = ["tab:blue" if row["inference_modalities"] == ["rgb"] else "tab:gray" for row in rows]
    figure = Figure(figsize=(8, 0.45 * len(rows) + 1.2))
    axis = figure.subplots()
    axis.barh(range(len(rows)), means, xerr=stds, color=colours)
    axis.set_yticks(range(len(rows)), labels)
    axis.invert_yaxis()
    axis.set_xlabel("% (blue: RGB only at inference)")
    axis.set_title(results["title"], fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write(results: dict, out: Path, columns: tuple[str, ...] = ()) -> str:
    """Write the three files; returns the Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown(results, columns)
    (out / "results.md").write_text(table)
    plot(results, out / "results.png")
    return table
