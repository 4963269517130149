"""Pre-extracted features on the grid as `(D, T)`, from `(T_file, D)` npy files (or
`(T_file, 1, 1, D)`, the layout of PDAN's Charades and TSU I3D features, read as `(T_file, D)`).

Features are extracted over windows of `window` frames every `stride` frames of a video at
`fps`; feature `i` is centred at `(i * stride + window / 2) / fps` (ActionFormer's rule), and
each grid step takes the feature nearest its instant. THUMOS14's standard I3D features hold RGB
in channels 0-1023 and flow in 1024-2047: `channels` picks a slice, so one file serves an RGB
student and a flow teacher as two modalities.

Integrity: a folder written by `crossdistill extract-features` holds a `meta.json` listing each
file's size and BLAKE2b digest and the command that wrote it. `check` (run on every video before
training, and by `crossdistill data-check`) compares the file against its entry first, so a
truncated or altered file is reported by name with that command to rebuild it, instead of
failing to load mid-epoch or, worse, loading as wrong numbers. The size is always compared; the
digest too unless `verify_digest: false` (it costs one more pass over a file the NaN scan reads in
full anyway). Folders without a `meta.json` (features from elsewhere) get the other checks only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import (
    TimeGrid,
    expected_features,
    feature_positions,
    interpolate,
    nearest,
    resampled_positions,
)
from datamodules.sources.base import DataError, Problem, Source, load_array, non_finite, steps_info
from datamodules.sources.integrity import entry_problem

META = "meta.json"
_SHAPE_PROBLEM = "has shape {}, not (T, D) or (T, 1, 1, D)"
_SHAPE_FIX = "store features as T x D"


class FeatureSource(Source):
    """Feature sequences `T x D` from npy files.

    Args:
        path: the feature file of each id, e.g. `i3d/{video_id}.npy`.
        stride: frames between consecutive features.
        window: frames each feature was extracted from.
        fps: frame rate the features were extracted at; default the annotation's.
        channels: `[start, end)` slice of the feature dimension, e.g. `[0, 1024]`.
        resample: spread the features evenly over the annotated duration and interpolate
            linearly (ActivityNet-style fixed-length features), instead of ActionFormer's rule.
        verify_digest: compare each file's digest with its folder's `meta.json` entry (the size
            is always compared where there is one).
    """

    kind = "features"
    time_axis = 1

    def __init__(
        self,
        path: str | None = None,
        stride: int = 1,
        window: int = 1,
        fps: float | None = None,
        channels: tuple[int, int] | None = None,
        resample: bool = False,
        verify_digest: bool = True,
    ) -> None:
        super().__init__(path, resample)
        if stride < 1 or window < 1:
            raise ValueError(f"stride and window must be positive, got {stride}, {window}")
        if channels is not None and not 0 <= channels[0] < channels[1]:
            raise ValueError(f"channels must be [start, end) with 0 <= start < end: {channels}")
        self.stride = stride
        self.window = window
        self.fps = fps
        self.channels = channels
        self.verify_digest = verify_digest
        self._metas: dict[Path, tuple[int, dict[str, Any] | None]] = {}
        self._widths: dict[str, int] = {}  # video id -> channels of its file, seen by `check`

    def _fps(self, record: VideoRecord) -> float:
        fps = self.fps or record.fps
        if not fps:
            raise DataError(
                f"{self.file(record.video_id)}: the frame rate of the features is unknown. Fix: "
                f"set modalities.{self.name}.init_args.fps, or give fps in the annotations"
            )
        return fps

    def _meta(self, folder: Path) -> dict[str, Any] | None:
        """The folder's `meta.json` (re-read when it changes), or None without one."""
        path = folder / META
        if not path.is_file():
            return None
        stamp = path.stat().st_mtime_ns
        cached = self._metas.get(folder)
        if cached is None or cached[0] != stamp:
            cached = (stamp, json.loads(path.read_text()))
            self._metas[folder] = cached
        return cached[1]

    def integrity_problem(self, path: Path, record: VideoRecord) -> Problem | None:
        """The file against its `meta.json` entry: truncated, altered or missing."""
        meta = self._meta(path.parent)
        entry = (meta or {}).get("files", {}).get(record.video_id)
        if entry is None:
            return None
        what = entry_problem(path, entry, self.verify_digest)
        if what is None:
            return None
        command = meta.get("command") if meta else None
        fix = f"re-extract the features: `{command}`" if command else "re-extract the features"
        return self.problem(path, record, f"{what} (checked against {path.parent / META})", fix)

    def check(self, record: VideoRecord) -> list[Problem]:
        found = self.integrity_problem(self.file(record.video_id), record)
        return [found] if found is not None else super().check(record)

    def _array(self, path: Path) -> np.ndarray:
        """The file's features as `(T, D)` (a `(T, 1, 1, D)` file viewed so), memory-mapped."""
        array = load_array(path)
        if array.ndim == 4 and array.shape[1:3] == (1, 1):
            return array[:, 0, 0]
        if array.ndim != 2:
            raise DataError(f"{path}: {_SHAPE_PROBLEM.format(array.shape)}. Fix: {_SHAPE_FIX}")
        return array

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        try:
            array = self._array(path)
        except DataError:
            shape = load_array(path).shape
            return [self.problem(path, record, _SHAPE_PROBLEM.format(shape), _SHAPE_FIX)]
        if self.channels is not None and self.channels[1] > array.shape[1]:
            return [
                self.problem(
                    path,
                    record,
                    f"has {array.shape[1]} channels, fewer than channels {list(self.channels)}",
                    f"correct modalities.{self.name}.init_args.channels or the file",
                )
            ]
        self._widths[record.video_id] = int(array.shape[1])
        if bad := non_finite(array):
            return [
                self.problem(
                    path,
                    record,
                    f"holds {bad} NaN/Inf values",
                    "re-extract the features of this video (or set `missing: skip`)",
                )
            ]
        if record.duration is None or self.resample:  # resampled files may have any length
            return []
        expected = expected_features(record.duration, self._fps(record), self.stride, self.window)
        return self.length_problem(path, record, array.shape[0], expected, "features")

    def check_across(self, records: list[VideoRecord]) -> dict[str, list[Problem]]:
        """Files whose feature width is not the others': a batch cannot hold both (collate
        would fail mid-epoch naming no file). The width is the folder's `meta.json` one, else
        the most common."""
        widths = {
            r.video_id: self._widths[r.video_id] for r in records if r.video_id in self._widths
        }
        if len(set(widths.values())) < 2:
            return {}
        counts: dict[int, int] = {}
        for width in widths.values():
            counts[width] = counts.get(width, 0) + 1
        recorded = self._meta(self.file(records[0].video_id).parent) or {}
        expected = recorded.get("feature_dim") or max(counts, key=lambda w: (counts[w], -w))
        found = {}
        for record in records:
            width = widths.get(record.video_id)
            if width is not None and width != expected:
                found[record.video_id] = [
                    self.problem(
                        self.file(record.video_id),
                        record,
                        f"has {width} channels, where the other files have {expected}",
                        "re-extract this video's features with the same backbone, or set "
                        "`missing: skip` to leave it out",
                    )
                ]
        return found

    def duration(self, record: VideoRecord) -> float | None:
        length = self._array(self.file(record.video_id)).shape[0]
        return ((length - 1) * self.stride + self.window) / self._fps(record)

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        array = self._array(self.file(record.video_id))
        if self.channels is not None:
            array = array[:, self.channels[0] : self.channels[1]]
        times, valid = steps_info(grid, record)
        out = np.zeros((grid.steps, array.shape[1]), dtype=np.float32)
        if self.resample:
            positions = resampled_positions(times[valid], record.duration, len(array))
            out[valid] = interpolate(array, positions)
        else:
            positions = feature_positions(times[valid], self._fps(record), self.stride, self.window)
            index = nearest(positions, len(array))
            unique, inverse = np.unique(index, return_inverse=True)
            out[valid] = np.asarray(array[unique], dtype=np.float32)[inverse]
        if not np.isfinite(out).all():
            raise DataError(
                f"{self.file(record.video_id)}: NaN/Inf features in [{grid.t0:g}, {grid.t1:g}) s. "
                "Fix: re-extract the features of this video"
            )
        return {self.name: torch.from_numpy(out.T.copy())}

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        if self.channels is not None:
            dim = self.channels[1] - self.channels[0]
        else:
            dim = self._array(self.file(record.video_id)).shape[1]
        return {self.name: (dim, steps)}
