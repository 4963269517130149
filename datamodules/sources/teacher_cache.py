"""A frozen teacher's outputs, cached on the video's step grid, read back as a modality.

`crossdistill cache-teachers` (`lightning_modules.teachers.cache`) writes one folder per teacher:
`<video_id>.npy` of shape `(steps, D)` float32, the teacher's per-step outputs over the whole
video (its embeddings, per-step logits and the taps the objectives read, concatenated along the
channels in the order `manifest.json`'s `layout` gives), and `manifest.json`, written last, with
the cache key, the grid stride, and each file's steps, size and digest.

A window is cut by step index, as the features of `FeatureSource` are: training windows and
evaluation tiles start on the video's step grid (`datamodules.sampling`), so window step `i` is
video step `round(t0 / stride) + i`. Windows off that grid (clips) or of another stride are an
error: the cache holds one value per step and does not interpolate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, video_steps
from datamodules.sources.base import DataError, Problem, Source, load_array, steps_info
from datamodules.sources.integrity import entry_problem

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A cache folder's manifest, or None when there is none (never built, or interrupted)."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


class TeacherCacheSource(Source):
    """One teacher's cached outputs as `(D, T)` on the sample's grid.

    Args:
        folder: the teacher's cache folder (holding `manifest.json`).
        rebuild: the command that rebuilds the cache, quoted in every problem's fix.
        verify_digest: compare each file's digest with the manifest (the size always is).
    """

    kind = "teacher_cache"
    time_axis = 1

    def __init__(self, folder: str | Path, rebuild: str = "", verify_digest: bool = True) -> None:
        super().__init__(str(Path(folder) / "{video_id}.npy"))
        self.folder = Path(folder)
        self.rebuild = rebuild or "crossdistill cache-teachers --config <the fit configs>"
        self.verify_digest = verify_digest
        manifest = read_manifest(self.folder)
        if manifest is None:
            raise DataError(
                f"{self.folder / MANIFEST}: no teacher cache here (never built, or its build was "
                f"interrupted). Fix: build it with `{self.rebuild}`"
            )
        self.manifest = manifest
        self.stride = float(manifest["stride"])
        self.channels = int(sum(width for _, width in manifest["layout"]))

    def file(self, video_id: str) -> Path:
        return self.folder / f"{video_id}.npy"  # the cache folder is not under the data root

    def _fix(self) -> str:
        return f"rebuild the teacher cache: `{self.rebuild}`"

    def check(self, record: VideoRecord) -> list[Problem]:
        path = self.file(record.video_id)
        entry = self.manifest["videos"].get(record.video_id)
        if entry is None:
            what = f"video is not in the teacher cache ({self.folder / MANIFEST})"
            return [self.problem(path, record, what, self._fix())]
        what = entry_problem(path, entry, self.verify_digest)
        if what is None and record.duration is not None:
            steps = video_steps(record.duration, self.stride)
            if entry["steps"] != steps:
                what = f"holds {entry['steps']} steps, the video has {steps} of {self.stride:g} s"
        if what is None:
            return []
        return [self.problem(path, record, f"{what} (teacher cache {self.folder})", self._fix())]

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        if not math.isclose(grid.stride, self.stride, rel_tol=1e-6):
            raise DataError(
                f"{self.folder}: the cache has a step of {self.stride:g} s, the window "
                f"{grid.stride:g} s. Fix: rebuild it with this data config: `{self.rebuild}`"
            )
        first = grid.t0 / self.stride
        if abs(first - round(first)) > 1e-6:
            raise DataError(
                f"{self.folder}: a window starting at {grid.t0:g} s is off the video's step grid; "
                "cached teachers serve windows and tiles on that grid (dense and segment tasks), "
                "not clips. Fix: use model.init_args.teacher_source: "
                "lightning_modules.teachers.Online"
            )
        array = load_array(self.file(record.video_id))
        _, valid = steps_info(grid, record)
        index = round(first) + np.arange(grid.steps)
        valid &= (index >= 0) & (index < len(array))
        out = np.zeros((grid.steps, array.shape[1]), dtype=np.float32)
        if valid.any():
            start, stop = int(index[valid][0]), int(index[valid][-1]) + 1
            out[valid] = np.asarray(array[start:stop], dtype=np.float32)[index[valid] - start]
        return {self.name: torch.from_numpy(out.T.copy())}

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        return {self.name: (self.channels, steps)}
