"""What the paper-table notebooks (`experiments/*.ipynb`) share: running a table, reading its
results and test predictions, scoring derived rows, and the plots.

A table run by `crossdistill reproduce` leaves, under its output folder `OUT`:
`results.json` (schema in `lightning_modules/reproduce/results.py`), and per row and seed a run
directory `OUT/runs/<row>-seed<N>/` whose `test/predictions/` holds the test predictions
(`frames.npz`, `segments.json` or `clips.json`, see `lightning_modules/predictions.py`). The
ground truth is the synthetic benchmark's under `OUT/data/synthetic/`, or the annotations of the
data config the table ran on (`reproduce --data`; `test_annotations`).
Everything here reads those files and scores them with the project's own metrics, so a number
in a plot is the number `crossdistill evaluate` would print.

Plots are saved as PNG under `OUT/plots/` (and returned, so a notebook shows them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from datamodules.annotations import AnnotationSet, read_activitynet, read_activitynet_results
from lightning_modules.distillation import ensemble_logits
from lightning_modules.evaluate import evaluate_clips, segment_table
from lightning_modules.metrics.frame_map import average_precision, frame_map
from lightning_modules.metrics.segment_map import segment_average_precision
from lightning_modules.reproduce.publish import PUBLISHED, REPOSITORY
from lightning_modules.reproduce.recipe import CONFIGS_ROOT, Recipe
from lightning_modules.reproduce.results import main_metric, shown

TEST_SUBSET = "testing"
"""The synthetic benchmark's test subset (`test_subset` of the data configs)."""
PREDICTION_FILES = {"dense": "frames.npz", "segments": "segments.json", "clips": "clips.json"}


# ------------------------------------------------------------------------- running a table
def reproduce(table: str, out: Path, smoke: bool, data: str = "synthetic", rows: str = "") -> dict:
    """Run `crossdistill reproduce` in this process (finished rows are skipped, interrupted ones
    resumed) and return the table's `results.json`; `rows` is `--rows` (empty: every row)."""
    from lightning_modules.commands.reproduce import main

    argv = [table, "--out", str(out), "--data", data, *(["--smoke"] if smoke else [])]
    argv += ["--rows", rows] if rows else []
    status = main(argv)
    if status != 0:
        raise RuntimeError(f"crossdistill reproduce {' '.join(argv)} exited with {status}")
    return load_results(out)


def results_of(
    table: str, out: Path, smoke: bool, data: str, rows: str, rerun: bool
) -> tuple[dict, Path]:
    """A table's results and the folder the plots read: the published copy
    (`experiments/results/<table>/`, made by the code of the commit it records) when there is
    one and the notebook asks for the full synthetic table, else a `reproduce` run into `out`
    (always with `rerun`, `smoke`, your own data or a selection of rows)."""
    published = PUBLISHED / table
    wanted = data == "synthetic" and not (smoke or rerun or rows)
    if wanted and (published / "results.json").is_file():
        results = load_results(published)
        commits = {run.get("commit", "?")[:7] for run in
                   results.get("provenance", {}).get("invocations", [])}  # fmt: skip
        print(f"published results of commit(s) {', '.join(sorted(commits))} read from "
              f"{shown_path(published)} (CROSSDISTILL_RERUN=1 trains the table again)")  # fmt: skip
        return results, published
    return reproduce(table, out, smoke, data, rows), Path(out)


def shown_path(path: Path) -> str:
    """A path relative to the repository when it lies inside it: stored notebook outputs read
    the same on every machine."""
    path = Path(path).resolve()
    return str(path.relative_to(REPOSITORY) if path.is_relative_to(REPOSITORY) else path)


def load_results(out: Path) -> dict:
    return json.loads((Path(out) / "results.json").read_text())


def recipe_frame(recipe: Recipe) -> pd.DataFrame:
    """The recipe's rows: what each trains (configs under `configs/`), from which teachers, and
    with which extra flags."""

    def name(path: Path) -> str:
        return (
            str(path.relative_to(CONFIGS_ROOT)) if path.is_relative_to(CONFIGS_ROOT) else str(path)
        )

    return pd.DataFrame(
        [
            {
                "row": row.name,
                "label": row.label,
                "inference": "+".join(row.inference),
                "configs": " + ".join(name(p) for p in row.fit),
                "teachers": ", ".join(f"{k}←{v}" for k, v in row.teachers.items()),
                "flags": " ".join(a.replace("--model.init_args.", "") for a in row.args),
            }
            for row in recipe.rows
        ]
    ).set_index("row")


def results_frame(results: Mapping[str, Any], extra: Sequence[Mapping] = ()) -> pd.DataFrame:
    """One line per row: its main metric, ours (mean and std over seeds, in %) and the paper's
    value of that metric per dataset. `extra` adds derived rows (same structure as a row of
    `results.json`), e.g. a late fusion or an ensemble scored from the predictions."""
    rows = [*results["rows"], *extra]
    datasets = sorted({d for row in rows for d in row.get("paper", {})})
    lines = []
    for row in rows:
        metric = main_metric(row)
        summary = row["metrics"][metric]
        line = {
            "row": row["row"],
            "label": row["label"],
            "inference": "+".join(row["inference_modalities"]),
            "metric": metric,
            "ours": 100 * summary["mean"],
            "± std": 100 * summary["std"],
            "seeds": len(summary["values"]),
        }
        for dataset in datasets:
            line[f"paper: {dataset}"] = row.get("paper", {}).get(dataset, {}).get(metric)
        lines.append(line)
    return pd.DataFrame(lines).set_index("row").round(2)


def metric_frame(results: Mapping[str, Any], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean of the given metrics per row, in %."""
    return pd.DataFrame(
        {
            row["row"]: {m: 100 * row["metrics"][m]["mean"] for m in metrics if m in row["metrics"]}
            for row in results["rows"]
        }
    ).T.round(2)


def summary_row(
    name: str, label: str, inference: Sequence[str], per_seed: Sequence[Mapping[str, float]]
) -> dict:
    """A derived row in the `results.json` row structure, from its metrics per seed."""
    from lightning_modules.reproduce.results import summarise

    names = [m for m in per_seed[0] if all(m in s for s in per_seed)]
    return {
        "row": name,
        "label": label,
        "method": "derived from test predictions",
        "inference_modalities": list(inference),
        "metrics": {m: summarise([s[m] for s in per_seed]) for m in names},
        "paper": {},
    }


# ----------------------------------------------------------------------- reading predictions
def seeds_of(results: Mapping[str, Any], row: str) -> int:
    """How many seeds the row was run with."""
    for entry in results["rows"]:
        if entry["row"] == row:
            return len(next(iter(entry["metrics"].values()))["values"])
    raise KeyError(row)


def predictions_path(out: Path, row: str, seed: int, task: str) -> Path:
    """`OUT/runs/<row>-seed<N>/test/predictions/<file of the task>`."""
    return (
        Path(out) / "runs" / f"{row}-seed{seed}" / "test" / "predictions" / PREDICTION_FILES[task]
    )


def test_annotations(out: Path, data: str = "synthetic", subset: str = "") -> AnnotationSet:
    """The videos a table was tested on: the synthetic benchmark's under `out`, or those of the
    data config it ran on (`reproduce --data`), in the config's `test_subset` unless `subset`
    names another."""
    if data == "synthetic":
        truth = read_activitynet(
            Path(out) / "data" / "synthetic" / "annotations" / "activitynet.json"
        )
        return truth.subset(subset or TEST_SUBSET)
    from lightning_modules.commands.data_check import data_config_parser

    parser = data_config_parser("notebook", "")
    datamodule = parser.instantiate(parser.parse_args(["--config", data])).data
    return datamodule.annotation_set.subset(subset or str(datamodule.subsets["test"]))


def present(results: Mapping[str, Any], rows: Any) -> Any:
    """The rows of `rows` (a list, or a `{row: label}` dict) that the table ran (`--data` leaves
    out the rows on the synthetic frames, `--rows` the others); says which are left out."""
    ran = {row["row"] for row in results["rows"]}
    missing = [row for row in rows if row not in ran]
    if missing:
        print(f"not in this table, left out: {', '.join(missing)}")
    if isinstance(rows, Mapping):
        return {row: label for row, label in rows.items() if row in ran}
    return [row for row in rows if row in ran]


def read_frames(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and the `(T, K)` score array of each video of a `frames.npz`."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    classes = [str(c) for c in arrays.pop("classes").reshape(-1)]
    arrays.pop("stride", None)  # seconds per row, not a video
    return classes, arrays


def frame_targets(record: Any, classes: Sequence[str], steps: int) -> np.ndarray:
    """`(T, K)` multi-hot ground truth of a video on `steps` rows, by `crossdistill evaluate`'s
    rule: row i stands for time (i + 0.5) * duration / T."""
    times = (np.arange(steps) + 0.5) * record.duration / steps
    column = {name: k for k, name in enumerate(classes)}
    targets = np.zeros((steps, len(classes)), dtype=bool)
    for segment in record.segments:
        inside = (times >= segment.start) & (times <= segment.end)
        targets[inside, column[segment.label]] = True
    return targets


def _pooled_frames(
    classes: Sequence[str], videos: Mapping[str, np.ndarray], truth: AnnotationSet
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and targets of every row of the test videos, pooled (`evaluate frames`' rule)."""
    scores = [videos[v] for v in truth.records]
    targets = [frame_targets(r, classes, len(videos[v])) for v, r in truth.records.items()]
    return np.concatenate(scores), np.concatenate(targets)


def frame_class_ap(path: Path, truth: AnnotationSet) -> tuple[list[str], np.ndarray]:
    """Per-class per-frame AP (`frame_mAP`'s terms; NaN without positives) of a frames.npz."""
    classes, videos = read_frames(path)
    return classes, average_precision(*_pooled_frames(classes, videos, truth))


def segment_class_ap(
    path: Path, truth: AnnotationSet, tiou: float = 0.5
) -> tuple[list[str], np.ndarray]:
    """Per-class detection AP at one tIoU (NaN for classes without ground truth)."""
    classes = list(truth.classes)
    results = read_activitynet_results(path, classes=classes)
    video_index = {video: i for i, video in enumerate(truth.records)}
    class_index = {name: k for k, name in enumerate(classes)}
    kept = [r for r in results.records.values() if r.video_id in video_index]
    gt = segment_table(truth.records.values(), video_index, class_index)
    pred = segment_table(kept, video_index, class_index)
    ap = segment_average_precision(
        pred_video=pred["video"],
        pred_label=pred["label"],
        pred_segments=pred["segments"],
        pred_scores=np.nan_to_num(pred["scores"]),
        gt_video=gt["video"],
        gt_label=gt["label"],
        gt_segments=gt["segments"],
        num_classes=len(classes),
        tious=[tiou],
    )
    return classes, ap[0]


def read_clips(
    path: Path, head: str = "clip"
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Class names, clip ids, `(N, K)` probabilities and `(N,)` labels of one head of a
    clips.json."""
    data = json.loads(Path(path).read_text())
    classes = list(data["heads"][head])
    ids = sorted(data["clips"])
    probs = np.array([data["clips"][c][head]["scores"] for c in ids], dtype=np.float64)
    if data["scores"] == "logits":
        probs = np.exp(probs - probs.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
    labels = np.array([classes.index(data["clips"][c][head]["label"]) for c in ids])
    return classes, ids, probs, labels


def clip_class_ap(path: Path) -> tuple[list[str], np.ndarray]:
    """Per-class one-vs-rest AP of the clip probabilities (NaN for classes never the label)."""
    classes, _, probs, labels = read_clips(path)
    return classes, average_precision(probs, np.eye(len(classes), dtype=bool)[labels])


def class_ap(out: Path, row: str, seed: int, task: str, truth: AnnotationSet | None):
    """Per-class AP of a row's test predictions: frames, segments (tIoU 0.5) or clips."""
    path = predictions_path(out, row, seed, task)
    if task == "dense":
        return frame_class_ap(path, truth)
    if task == "segments":
        return segment_class_ap(path, truth)
    return clip_class_ap(path)


# ----------------------------------------------------------------------------- derived rows
def late_fusion_rows(
    out: Path, results: Mapping[str, Any], rows: Sequence[str], truth: AnnotationSet
) -> list[dict]:
    """The two-stream late fusion of `rows` as a derived table row, or none when the table did
    not run all of them."""
    if len(present(results, rows)) < len(rows):
        return []
    per_seed = late_fusion(out, rows, truth, seeds_of(results, rows[0]))
    label = "Late fusion " + " + ".join(rows)
    return [summary_row("late_fusion", label, list(rows), per_seed)]


def ensemble_rows(
    out: Path, results: Mapping[str, Any], teachers: Sequence[str], weightings: Sequence[str]
) -> list[dict]:
    """The multimodal teacher (ensemble of `teachers`) per weighting as derived table rows, or
    none when the table did not run every teacher."""
    if len(present(results, teachers)) < len(teachers):
        return []
    seeds = seeds_of(results, teachers[0])
    return [
        summary_row(
            f"ensemble_{w}",
            f"Multimodal teacher ({w.replace('_', '-')})",
            list(teachers),
            ensemble_clips(out, teachers, seeds, w),
        )
        for w in weightings
    ]


def late_fusion(
    out: Path, rows: Sequence[str], truth: AnnotationSet, seeds: int
) -> list[dict[str, float]]:
    """Per seed, the frame mAP of the average of the rows' per-frame sigmoid scores (two-stream
    late fusion) on the test videos, by `crossdistill evaluate frames`' pooled rule (the fused
    scores are kept in `OUT/derived/`, for `evaluate frames`)."""
    per_seed = []
    for seed in range(seeds):
        read = [read_frames(predictions_path(out, row, seed, "dense")) for row in rows]
        classes = read[0][0]
        if any(c != classes for c, _ in read):
            raise ValueError(f"rows {list(rows)} score different classes")
        fused = {v: np.mean([videos[v] for _, videos in read], axis=0) for v in read[0][1]}
        path = Path(out) / "derived" / f"late_fusion-{'+'.join(rows)}-seed{seed}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, classes=np.array(classes), **fused)
        per_seed.append(frame_map(*_pooled_frames(classes, fused, truth)))
    return per_seed


def ensemble_clips(
    out: Path, rows: Sequence[str], seeds: int, weighting: str = "uniform"
) -> list[dict[str, float]]:
    """Per seed, top-1/top-5/ECE of the multimodal teacher: `ensemble_logits` of the rows'
    test predictions. The log-probabilities stand for the logits (they differ by one constant
    per clip and teacher, which the weighted sum's softmax ignores); written as a clips.json
    of logits and scored by `crossdistill evaluate`'s `evaluate_clips`."""
    per_seed = []
    for seed in range(seeds):
        read = {row: read_clips(predictions_path(out, row, seed, "clips")) for row in rows}
        classes, ids, _, labels = next(iter(read.values()))
        for row, (c, i, _, _) in read.items():
            if c != classes or i != ids:
                raise ValueError(f"row {row} has other classes or clips than {rows[0]}")
        logits = {row: np.log(np.clip(p, 1e-12, None)) for row, (_, _, p, _) in read.items()}
        fused = ensemble_logits(
            {row: torch.from_numpy(z) for row, z in logits.items()},
            weighting,  # type: ignore[arg-type]
            torch.from_numpy(labels),
        ).numpy()
        payload = {
            "scores": "logits",
            "heads": {"clip": classes},
            "clips": {
                clip: {"clip": {"label": classes[y], "scores": z.tolist()}}
                for clip, y, z in zip(ids, labels, fused, strict=True)
            },
        }
        path = Path(out) / "derived" / f"ensemble-{weighting}-seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))
        per_seed.append(evaluate_clips(path)["clip"])
    return per_seed


# -------------------------------------------------------------------------------- plots
def _save(figure: plt.Figure, out: Path, name: str) -> plt.Figure:
    folder = Path(out) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(folder / f"{name}.png", dpi=110)
    return figure


def plot_class_ap(
    out: Path,
    rows: Mapping[str, str],
    task: str,
    truth: AnnotationSet | None,
    seed: int = 0,
    title: str = "",
) -> plt.Figure | None:
    """Grouped bars: per-class AP (in %) of each row (`{row name: legend label}`), one seed."""
    if not rows:  # none of them in this table
        return None
    per_row = {label: class_ap(out, row, seed, task, truth) for row, label in rows.items()}
    classes = next(iter(per_row.values()))[0]
    width = 0.8 / len(per_row)
    figure, axis = plt.subplots(figsize=(max(6, 0.9 * len(classes)), 3.6))
    for i, (label, (_, ap)) in enumerate(per_row.items()):
        mean = np.nanmean(ap) if np.isfinite(ap).any() else float("nan")
        axis.bar(
            np.arange(len(classes)) + i * width,
            100 * np.nan_to_num(ap),
            width,
            label=f"{label} (mean {100 * mean:.1f})",
        )
    axis.set_xticks(
        np.arange(len(classes)) + width * (len(per_row) - 1) / 2, classes, rotation=30, ha="right"
    )
    axis.set_ylabel("AP (%)")
    kind = {"dense": "per-frame AP", "segments": "detection AP at tIoU 0.5"}.get(
        task, "one-vs-rest AP of the clip probabilities"
    )
    axis.set_title(title or f"Per class, {kind}, test subset (seed {seed})", fontsize=10)
    axis.legend(fontsize=8)
    return _save(figure, out, "class_ap")


def plot_frame_timeline(
    out: Path,
    rows: Mapping[str, str],
    truth: AnnotationSet,
    video: str | None = None,
    seed: int = 0,
) -> plt.Figure | None:
    """Dense: one test video's per-frame scores of each row under its ground truth."""
    if not rows:  # none of them in this table
        return None
    video = video or next(iter(truth.records))
    read = {
        label: read_frames(predictions_path(out, row, seed, "dense")) for row, label in rows.items()
    }
    classes, videos = next(iter(read.values()))
    steps = len(videos[video])
    panels = [("ground truth", frame_targets(truth.records[video], classes, steps).astype(float))]
    panels += [(label, v[video]) for label, (_, v) in read.items()]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 1.3 + 1.2 * len(panels)), sharex=True)
    duration = truth.records[video].duration
    for axis, (label, scores) in zip(axes, panels, strict=True):
        axis.imshow(
            scores.T,
            aspect="auto",
            vmin=0,
            vmax=1,
            cmap="viridis",
            extent=(0, duration, len(classes) - 0.5, -0.5),
            interpolation="nearest",
        )
        axis.set_yticks(range(len(classes)), classes, fontsize=6)
        axis.set_title(label, fontsize=9, loc="left")
    axes[-1].set_xlabel(f"time (s) in {video}; colour: score (ground truth: 1 inside a segment)")
    return _save(figure, out, "timeline")


def plot_segment_timeline(
    out: Path,
    rows: Mapping[str, str],
    truth: AnnotationSet,
    video: str | None = None,
    seed: int = 0,
    top: int = 10,
) -> plt.Figure | None:
    """Segments: one test video's true segments and each row's `top` highest-scoring
    predictions (opacity = score relative to the row's best), one line per class."""
    if not rows:  # none of them in this table
        return None
    video = video or next(iter(truth.records))
    classes = list(truth.classes)
    panels = [
        ("ground truth", [(s.label, s.start, s.end, 1.0) for s in truth.records[video].segments])
    ]
    for row, label in rows.items():
        results = read_activitynet_results(predictions_path(out, row, seed, "segments"), classes)
        record = results.records.get(video)
        segments = sorted(record.segments if record else (), key=lambda s: -(s.score or 0.0))[:top]
        best = max((s.score or 0.0 for s in segments), default=1.0) or 1.0
        panels.append((label, [(s.label, s.start, s.end, (s.score or 0) / best) for s in segments]))
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 1.3 * len(panels)), sharex=True)
    for axis, (label, segments) in zip(axes, panels, strict=True):
        # segments of one class share its line, each on its own sub-line so overlaps show
        per_class = Counter(name for name, *_ in segments)
        placed: Counter[str] = Counter()
        for name, start, end, alpha in segments:
            k, height = classes.index(name), 0.8 / per_class[name]
            axis.barh(
                k - 0.4 + (placed[name] + 0.5) * height,
                end - start,
                left=start,
                height=0.9 * height,
                color=f"C{k % 10}",
                alpha=max(0.15, alpha),
                edgecolor="k",
                linewidth=0.3,
            )
            placed[name] += 1
        axis.set_yticks(range(len(classes)), classes, fontsize=6)
        axis.set_ylim(len(classes) - 0.5, -0.5)
        axis.set_title(label, fontsize=9, loc="left")
    axes[-1].set_xlim(0, truth.records[video].duration)
    axes[-1].set_xlabel(f"time (s) in {video}")
    return _save(figure, out, "timeline")


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin (the ECE's 15 equal-width bins): mean confidence, accuracy, count."""
    confidence = probs.max(1)
    right = probs.argmax(1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    safe = np.maximum(count, 1)
    return {
        "confidence": np.bincount(index, confidence, bins) / safe,
        "accuracy": np.bincount(index, right.astype(float), bins) / safe,
        "count": count,
    }


def plot_reliability(
    out: Path, rows: Mapping[str, str], seed: int = 0, bins: int = 15
) -> plt.Figure | None:
    """Clips: reliability diagrams (accuracy against confidence per bin) of each row."""
    if not rows:  # none of them in this table
        return None
    figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.3), squeeze=False)
    for axis, (row, label) in zip(axes[0], rows.items(), strict=True):
        _, _, probs, labels = read_clips(predictions_path(out, row, seed, "clips"))
        table = reliability(probs, labels, bins)
        used = table["count"] > 0
        centres = (np.arange(bins) + 0.5) / bins
        axis.bar(centres[used], table["accuracy"][used], 1 / bins, edgecolor="k", label="accuracy")
        axis.plot(table["confidence"][used], table["confidence"][used], "r.", label="confidence")
        axis.plot([0, 1], [0, 1], "k--", lw=0.8)
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence")
        axis.set_title(label, fontsize=9)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    return _save(figure, out, "reliability")


def plot_clip_confidence(
    out: Path, rows: Mapping[str, str], seed: int = 0, clips: int = 4
) -> plt.Figure | None:
    """Clips: each row's class probabilities for the first few test clips (true class in red)."""
    if not rows:  # none of them in this table
        return None
    read = {
        label: read_clips(predictions_path(out, row, seed, "clips")) for row, label in rows.items()
    }
    classes, ids, _, labels = next(iter(read.values()))
    shown = min(clips, len(ids))
    figure, axes = plt.subplots(1, shown, figsize=(3.0 * shown, 3.0), squeeze=False, sharey=True)
    width = 0.8 / len(read)
    for j, axis in enumerate(axes[0]):
        for i, (label, (_, _, probs, _)) in enumerate(read.items()):
            axis.bar(np.arange(len(classes)) + i * width, probs[j], width, label=label)
        axis.set_xticks(np.arange(len(classes)), classes, rotation=60, ha="right", fontsize=6)
        axis.get_xticklabels()[labels[j]].set_color("red")
        axis.set_title(ids[j], fontsize=8)
    axes[0][0].set_ylabel("probability")
    axes[0][0].legend(fontsize=7)
    return _save(figure, out, "clip_confidence")


def plot_rows(
    out: Path,
    results: Mapping[str, Any],
    rows: Sequence[str],
    name: str,
    metrics: Sequence[str] | None = None,
    baseline: str | None = None,
    title: str = "",
    extra: Sequence[Mapping] = (),
) -> plt.Figure | None:
    """Bars of chosen rows (mean ± std over seeds, in %), one panel per metric (default the
    main metric), with the `baseline` row's mean as a dashed line: the ablations of a table."""
    by_name = {row["row"]: row for row in [*results["rows"], *extra]}
    chosen = [by_name[r] for r in present({"rows": [*results["rows"], *extra]}, rows)]
    if not chosen:
        return None
    metrics = list(metrics or [main_metric(chosen[0])])
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(6.5 * len(metrics), 0.42 * len(rows) + 1.8), squeeze=False
    )
    for axis, metric in zip(axes[0], metrics, strict=True):
        means = [100 * r["metrics"][metric]["mean"] for r in chosen]
        stds = [100 * (r["metrics"][metric]["std"] or 0.0) for r in chosen]
        axis.barh(range(len(chosen)), means, xerr=stds, color="tab:blue")
        for y, (row, mean, std) in enumerate(zip(chosen, means, stds, strict=True)):
            axis.text(mean + std + 1, y, shown(row["metrics"][metric]), va="center", fontsize=7)
        axis.set_xlim(0, max(m + s for m, s in zip(means, stds, strict=True)) * 1.25)
        label = f"{metric} (%)"
        if baseline in by_name:
            axis.axvline(100 * by_name[baseline]["metrics"][metric]["mean"], color="k", ls="--")
            label += f"\ndashed: {by_name[baseline]['label']}"
        axis.set_yticks(range(len(chosen)), [r["label"] for r in chosen], fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel(label, fontsize=9)
    figure.suptitle(title, fontsize=10)
    return _save(figure, out, name)


def plot_tiou_curve(
    out: Path, results: Mapping[str, Any], rows: Sequence[str], name: str = "tiou"
) -> plt.Figure:
    """Segments: detection mAP (mean over seeds, in %) against the tIoU threshold, per row."""
    by_name = {row["row"]: row for row in results["rows"]}
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    for row in present(results, rows):
        metrics = by_name[row]["metrics"]
        tious = sorted(float(m.split("@")[1]) for m in metrics if m.startswith("mAP@"))
        means = [100 * metrics[f"mAP@{t:g}"]["mean"] for t in tious]
        axis.plot(tious, means, "o-", label=by_name[row]["label"])
    axis.set(xlabel="tIoU threshold", ylabel="mAP (%)")
    axis.legend(fontsize=7)
    return _save(figure, out, name)
