"""What every task's test predictions share: the place of each window in its video, and the
merge of the windows' rows. Each `lightning_modules.tasks.Task` adds its predictions to the rows
(`prediction_row`) and writes its own file (`write_rows`) in the format `crossdistill evaluate`
reads. Rows are collected per window on every rank and merged on rank 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def window_meta(batch: Mapping[str, Any]) -> list[dict]:
    """One row per window of a batch: its video, index in the video, start, stride, duration."""
    meta = batch["meta"]
    return [
        {
            "video_id": video_id,
            "window_index": int(meta["window_index"][b]),
            "t0": float(meta["t0"][b]),
            "stride": float(meta["stride"][b]),
            "duration": float(meta["duration"][b]),
        }
        for b, video_id in enumerate(meta["video_id"])
    ]


def merged_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows of every rank in (video, window) order, each window once (DDP padding repeats
    some)."""
    unique = {(r["video_id"], r["window_index"]): r for r in rows}
    return [unique[key] for key in sorted(unique)]
