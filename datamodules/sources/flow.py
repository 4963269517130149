"""Optical flow on the grid as `(2, T, S, S)`: x and y displacement in output pixels / `bound`.

Three storages, told apart by the path: the project's quantised flow video (`.mp4`, see
`datamodules.optical_flow`), decoded like RGB and dequantised; a folder of quantised JPEG pairs (a
path without extension, `flow/{video_id}` holding `flow_x_00001.jpg`, `flow_y_00001.jpg`, ...: the
TSN/I3D/denseflow layout, read as a frame folder); and `.npy` arrays `(T, H, W, 2)` in pixels per
frame. `crossdistill flow` writes the first two. Displacements are rescaled with the frames (a frame
halved in size moves half as many pixels), so flow stays in pixels of the tensor it lives in.

Quantised flow is cut and resized as the 8-bit values it is stored in, then dequantised: the
frames a frame store keeps (`frame_store`) are exactly those values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, expected_frames
from datamodules.optical_flow import dequantize_flow
from datamodules.sources.base import (
    DataError,
    Problem,
    load_array,
    non_finite,
    square_resize,
    steps_info,
)
from datamodules.sources.decoders import Backend
from datamodules.sources.video import FramesFromVideo, on_steps


class FlowSource(FramesFromVideo):
    """Optical flow, from a quantised flow video (`.mp4`), a folder of quantised JPEG pairs or an
    array (`.npy`, `(T, H, W, 2)`).

    Args:
        path: the flow file of each id, e.g. `flow/{video_id}.mp4` (manifest default), or its
            folder of JPEG pairs, without an extension, e.g. `flow/{video_id}`.
        bound: displacement, in output pixels, that maps to 1.0; also the quantisation bound of
            flow videos and JPEG pairs (manifest default `bound_px`; 20 is usual for JPEGs).
        size: side of the square output, pixels.
        backend: video decoder for `.mp4` flow, `decord` or `pyav`.
        frame_store: decode each `.mp4` flow once, whole, into a store of its x and y planes on
            the square, read by later windows instead of decoding (see `VideoSource`).
        fps: frame rate of `.npy` flow and of JPEG folders; default the manifest's, else the
            annotation's (videos carry their own).
        resample: spread the file's frames over the annotated duration when their count
            disagrees with it by more than one frame.
        frames: the x and y file names of each frame in a JPEG folder, with one integer field
            for its number (default TSN's and denseflow's `flow_x_{:05d}.jpg`,
            `flow_y_{:05d}.jpg`; EPIC-KITCHENS: `u/frame_{:010d}.jpg`, `v/frame_{:010d}.jpg`).
        first_frame: the number of a folder's first frame (1 in TSN, denseflow, EPIC-KITCHENS).
    """

    kind = "flow"
    time_axis = 1
    channels: ClassVar[int] = 2
    default_frames = ("flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg")

    def __init__(
        self,
        path: str | None = None,
        bound: float | None = None,
        size: int = 224,
        backend: Backend = "decord",
        frame_store: bool | str = False,
        fps: float | None = None,
        resample: bool = False,
        frames: list[str] | None = None,
        first_frame: int = 1,
    ) -> None:
        super().__init__(path, size, backend, frame_store, resample, fps, frames, first_frame)
        if len(self.frames) != 2:
            raise ValueError(f"flow frames need two names, x then y, got {list(self.frames)}")
        self.bound = bound

    def configure(self, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        if self.fps is None:
            self.fps = manifest.get("fps")
        super().configure(entry, manifest)
        if self.bound is None:
            self.bound = entry.get("bound_px")
        if self.bound is None or self.bound <= 0:
            raise DataError(
                f"modality {self.name!r}: no flow bound. Fix: set "
                f"modalities.{self.name}.init_args.bound (pixels that map to 1.0; for quantised "
                "flow videos, the bound they were stored with)"
            )

    @property
    def _is_array(self) -> bool:
        return str(self.path).endswith(".npy")

    @property
    def _reads_videos(self) -> bool:
        return super()._reads_videos and not self._is_array

    def _array_fps(self, record: VideoRecord) -> float:
        fps = self.fps or record.fps
        if not fps:
            raise DataError(
                f"{self.file(record.video_id)}: the frame rate of npy flow is unknown. Fix: set "
                f"modalities.{self.name}.init_args.fps, or give fps in the annotations"
            )
        return fps

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        if not self._is_array:
            return super().check_file(path, record)
        array = load_array(path)
        if array.ndim != 4 or array.shape[-1] != 2:
            return [
                self.problem(
                    path,
                    record,
                    f"has shape {array.shape}, not (T, H, W, 2)",
                    "store flow as (frames, height, width, [x, y]) float pixels",
                )
            ]
        if bad := non_finite(array):
            return [self.problem(path, record, f"holds {bad} NaN/Inf values", "re-compute it")]
        if record.duration is None:
            return []
        expected = expected_frames(record.duration, self._array_fps(record))
        return self.length_problem(path, record, array.shape[0], expected, "frames")

    def duration(self, record: VideoRecord) -> float | None:
        if not self._is_array:
            return super().duration(record)
        return load_array(self.file(record.video_id)).shape[0] / self._array_fps(record)

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        if self._is_array:
            flow, rows = self._array_on_grid(record, grid)
            side = min(flow.shape[1:3]) if len(flow) else self.size
            flow = square_resize(flow, self.size)
        else:
            quantised, rows, side = self.square_frames(record, grid)
            flow = dequantize_flow(quantised, self.bound)
        flow *= self.size / side / self.bound
        channels_first = np.ascontiguousarray(on_steps(flow, rows).transpose(3, 0, 1, 2))
        return {self.name: torch.from_numpy(channels_first)}

    def _array_on_grid(self, record: VideoRecord, grid: TimeGrid) -> tuple[np.ndarray, np.ndarray]:
        array = load_array(self.file(record.video_id))
        times, valid = steps_info(grid, record)
        index = self.frame_index(times[valid], self._array_fps(record), len(array), record.duration)
        unique, inverse = np.unique(index, return_inverse=True)
        rows = np.full(grid.steps, -1, dtype=np.int64)
        rows[valid] = inverse
        return np.asarray(array[unique], dtype=np.float32), rows
