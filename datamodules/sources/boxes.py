"""Object boxes on the grid: `(T, N, 6)` = x1, y1, x2, y2, category index, score, and a mask.

Files are JSON, one per video, in the synthetic benchmark's layout (that of Something-Else
detections): `{"fps", "width", "height", "frames": [{"frame": t, "labels": [{"box2d": {x1, y1,
x2, y2}, "category", "score"}]}]}` with pixel coordinates. A frame holds any number of boxes;
each step keeps the `max_boxes` highest-scoring ones, padded, with `<name>_mask` True at real
boxes. Coordinates are normalised to the centred square view the video sources cut.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, expected_frames
from datamodules.sources.base import DataError, Problem, Source, centre_square, steps_info


class BoxFile(NamedTuple):
    """A parsed box file: per frame a `(n, 6)` array in normalised coordinates, and its rate."""

    frames: list[np.ndarray]
    fps: float | None


class BoxSource(Source):
    """Detected boxes from per-video JSON files.

    Args:
        path: the box file of each id, e.g. `boxes/{video_id}.json` (manifest default).
        categories: category names, whose position is the index in the output (manifest
            default); a box of another category is an error naming the file.
        max_boxes: boxes kept per step (the highest scores), N of the output.
        resample: spread the file's frames over the annotated duration when their count
            disagrees with it by more than one frame.
    """

    kind = "boxes"
    time_axis = 0

    def __init__(
        self,
        path: str | None = None,
        categories: list[str] | None = None,
        max_boxes: int = 8,
        resample: bool = False,
    ) -> None:
        super().__init__(path, resample)
        if max_boxes < 1:
            raise ValueError(f"max_boxes must be positive, got {max_boxes}")
        self.categories = categories
        self.max_boxes = max_boxes

    def configure(self, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        if self.categories is None:
            self.categories = entry.get("categories")
        if not self.categories:
            raise DataError(
                f"modality {self.name!r}: no box categories. Fix: set "
                f"modalities.{self.name}.init_args.categories to the list of category names"
            )

    def _read(self, path: Path) -> BoxFile:
        return _parse(path, path.stat().st_mtime_ns, tuple(self.categories or ()))

    def _fps(self, path: Path, parsed: BoxFile, record: VideoRecord) -> float:
        fps = parsed.fps or record.fps
        if not fps:
            raise DataError(
                f'{path}: the frame rate of the boxes is unknown. Fix: add "fps" to the file, '
                "or give fps in the annotations"
            )
        return fps

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        parsed = self._read(path)
        if record.duration is None:
            return []
        expected = expected_frames(record.duration, self._fps(path, parsed, record))
        return self.length_problem(path, record, len(parsed.frames), expected, "frames")

    def duration(self, record: VideoRecord) -> float | None:
        path = self.file(record.video_id)
        parsed = self._read(path)
        return len(parsed.frames) / self._fps(path, parsed, record)

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        path = self.file(record.video_id)
        parsed = self._read(path)
        times, valid = steps_info(grid, record)
        fps = self._fps(path, parsed, record)
        boxes = np.zeros((grid.steps, self.max_boxes, 6), dtype=np.float32)
        mask = np.zeros((grid.steps, self.max_boxes), dtype=bool)
        index = self.frame_index(times[valid], fps, len(parsed.frames), record.duration)
        for step, frame in zip(np.flatnonzero(valid), index, strict=True):
            found = parsed.frames[frame]
            kept = found[np.argsort(-found[:, 5], kind="stable")[: self.max_boxes]]
            boxes[step, : len(kept)] = kept
            mask[step, : len(kept)] = True
        return {self.name: torch.from_numpy(boxes), f"{self.name}_mask": torch.from_numpy(mask)}

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        return {
            self.name: (steps, self.max_boxes, 6),
            f"{self.name}_mask": (steps, self.max_boxes),
        }


def _box_values(label: dict[str, Any], frame: int) -> tuple[float, ...]:
    """x1, y1, x2, y2 and score of one detection, refused when not finite or inverted (a NaN
    box would crash training later as "scores contain NaN", naming nothing)."""
    try:
        box = label["box2d"]
        values = tuple(float(box[k]) for k in ("x1", "y1", "x2", "y2"))
        score = float(label.get("score", 1.0))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"frame {frame} has a box without numeric x1, y1, x2, y2 ({err!r})"
        ) from None
    if not all(math.isfinite(v) for v in (*values, score)):
        raise ValueError(
            f"frame {frame} has a box with a non-finite value: box2d {label['box2d']}, score "
            f"{score}; fix or drop that detection"
        )
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1:
        raise ValueError(
            f"frame {frame} has an inverted box (x2 < x1 or y2 < y1): {label['box2d']}; boxes "
            "are x1, y1 (top left) and x2, y2 (bottom right) in pixels"
        )
    return x1, y1, x2, y2, score


@lru_cache(maxsize=64)
def _parse(path: Path, mtime_ns: int, categories: tuple[str, ...]) -> BoxFile:
    """Parse a box file once per process and version (a window reads a few frames of a
    whole-video file); errors say what is wrong, the caller says which file."""
    try:
        data = json.loads(path.read_text())
        width, height = float(data["width"]), float(data["height"])
        frames = data["frames"]
        fps = float(data["fps"]) if data.get("fps") else None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"not a box file with width, height and frames ({err!r})") from None
    x0, y0, side = centre_square(width, height)
    index = {name: i for i, name in enumerate(categories)}
    parsed = []
    for t, frame in enumerate(frames):
        rows = []
        for label in frame.get("labels", []):
            category = label.get("category")
            if category not in index:
                raise ValueError(
                    f"frame {t} has a box of category {category!r}, not one of "
                    f"{list(categories)}; fix the file or the categories option"
                )
            x1, y1, x2, y2, score = _box_values(label, t)
            rows.append(
                (
                    (x1 - x0) / side,
                    (y1 - y0) / side,
                    (x2 - x0) / side,
                    (y2 - y0) / side,
                    index[category],
                    score,
                )
            )
        parsed.append(np.array(rows, dtype=np.float32).reshape(-1, 6))
    return BoxFile(parsed, fps)
