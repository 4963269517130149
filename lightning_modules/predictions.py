"""Test-time predictions written in the files `crossdistill evaluate` reads.

dense: `frames.npz`, one `(T, K)` score array per video on the video's whole grid (windows put
back in place), `classes` and `stride` (seconds per row, when every video has the same);
segments: `segments.json` in the ActivityNet results layout, times in seconds from the video
start; clips: `clips.json` with per-head class names and scores.
Rows are collected per window on every rank and merged on rank 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.grid import place_window, video_steps


def window_rows(task_name: str, predictions: Any, batch: Mapping[str, Any]) -> list[dict]:
    """Plain-python rows (one per window) of a batch's predictions, cheap to gather."""
    meta = batch["meta"]
    rows = []
    for b, video_id in enumerate(meta["video_id"]):
        row = {
            "video_id": video_id,
            "window_index": int(meta["window_index"][b]),
            "t0": float(meta["t0"][b]),
            "stride": float(meta["stride"][b]),
            "duration": float(meta["duration"][b]),
        }
        if task_name == "dense":
            valid = batch["mask"][b].bool().cpu()
            row["scores"] = predictions[b].float().cpu().numpy()[:, valid.numpy()]
        elif task_name == "segments":
            row.update({k: v.detach().cpu().numpy() for k, v in predictions[b].items()})
        else:
            heads = predictions if isinstance(predictions, Mapping) else {"clip": predictions}
            row["scores"] = {h: p[b].float().cpu().numpy() for h, p in heads.items()}
            targets = batch["targets"]["clip"]
            targets = targets if isinstance(targets, Mapping) else {"clip": targets}
            row["labels"] = {h: int(t[b]) for h, t in targets.items()}
        rows.append(row)
    return rows


def write_predictions(
    task_name: str, rows: Sequence[dict], class_names: Sequence[str] | Mapping[str, Sequence[str]],
    folder: Path,
) -> Path:  # fmt: skip
    """Merge window rows (duplicates from DDP padding dropped) and write the task's file."""
    folder.mkdir(parents=True, exist_ok=True)
    unique = {(r["video_id"], r["window_index"]): r for r in rows}
    rows = [unique[key] for key in sorted(unique)]
    if task_name == "dense":
        return _write_frames(rows, list(class_names), folder / "frames.npz")
    if task_name == "segments":
        return _write_segments(rows, list(class_names), folder / "segments.json")
    return _write_clips(rows, class_names, folder / "clips.json")


def _write_frames(rows: Sequence[dict], classes: list[str], path: Path) -> Path:
    videos: dict[str, np.ndarray] = {}
    for row in rows:
        steps = video_steps(row["duration"], row["stride"])
        scores = videos.setdefault(
            row["video_id"], np.full((steps, len(classes)), np.nan, np.float32)
        )
        place_window(scores, row["scores"].T, row["t0"], row["stride"])
    for video_id, scores in videos.items():
        if np.isnan(scores).any():
            missing = int(np.isnan(scores[:, 0]).sum())
            raise RuntimeError(f"{video_id}: {missing} steps were never scored by a test window")
    strides = {row["stride"] for row in rows}
    # the seconds per row, so that `evaluate frames` places rows in time, not spread over the video
    stride = {"stride": np.float64(strides.pop())} if len(strides) == 1 else {}
    np.savez_compressed(path, classes=np.array(classes), **stride, **videos)
    return path


def _write_segments(rows: Sequence[dict], classes: list[str], path: Path) -> Path:
    results: dict[str, list[dict]] = {row["video_id"]: [] for row in rows}
    for row in rows:
        for (start, end), score, label in zip(
            row["segments"], row["scores"], row["labels"], strict=True
        ):
            results[row["video_id"]].append({
                "label": classes[int(label)],
                "score": float(score),
                "segment": [float(start + row["t0"]), float(end + row["t0"])],
            })  # fmt: skip
    path.write_text(
        json.dumps({"version": "crossdistill", "results": results, "external_data": {}})
    )
    return path


def _write_clips(
    rows: Sequence[dict], class_names: Sequence[str] | Mapping[str, Sequence[str]], path: Path
) -> Path:
    heads = dict(class_names) if isinstance(class_names, Mapping) else {"clip": list(class_names)}
    clips = {
        f"{row['video_id']}@{row['window_index']}": {
            head: {
                "label": heads[head][row["labels"][head]],
                "scores": row["scores"][head].tolist(),
            }
            for head in heads
        }
        for row in rows
    }
    payload = {
        "scores": "probabilities",
        "heads": {h: list(n) for h, n in heads.items()},
        "clips": clips,
    }
    path.write_text(json.dumps(payload))
    return path
