"""RGB video: frames on the grid, decoded from mp4 (decord, or PyAV), as `(3, T, S, S)` in [0, 1].

Each frame is cut to the centred square of its short side and resized to `size`, the view that
keypoints and boxes are normalised to as well. No mean/std normalisation: that belongs to the
model, whose backbone knows its own statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, expected_frames
from datamodules.sources.base import Problem, ReaderCache, Source, centre_square, steps_info
from datamodules.sources.decoders import Backend, FrameReader, ReaderOpener


class FramesFromVideo(Source):
    """A source whose file is a video read frame by frame (RGB video, flow stored as video)."""

    channels: ClassVar[int] = 3

    def __init__(
        self,
        path: str | None = None,
        size: int = 224,
        backend: Backend = "decord",
        cache_mb: int = 0,
        resample: bool = False,
    ) -> None:
        super().__init__(path, resample)
        if size < 1 or cache_mb < 0:
            raise ValueError(f"need size >= 1 and cache_mb >= 0, got {size}, {cache_mb}")
        self.size = size
        self.backend = backend
        budget = cache_mb * 2**20
        self._readers: ReaderCache[FrameReader] = ReaderCache(
            ReaderOpener(backend, budget), budget_bytes=budget
        )

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        # opened outside the cache: the main process must not hold readers forked workers inherit
        reader = ReaderOpener(self.backend)(path)
        if reader.frame_count < 1:
            return [self.problem(path, record, "has no frames", "re-encode or replace the video")]
        # the last frame proves the stream is complete (a truncated file fails here); a deep
        # check decodes every frame, in chunks, to find a damaged group of pictures inside
        if self.deep_check:
            for start in range(0, reader.frame_count, 64):
                reader.frames(np.arange(start, min(reader.frame_count, start + 64)))
        else:
            reader.frames(np.array([reader.frame_count - 1]))
        if record.duration is None:
            return []
        expected = expected_frames(record.duration, reader.fps)
        return self.length_problem(path, record, reader.frame_count, expected, "frames")

    def duration(self, record: VideoRecord) -> float | None:
        reader = ReaderOpener(self.backend)(self.file(record.video_id))
        return reader.frame_count / reader.fps

    def decode(self, record: VideoRecord, grid: TimeGrid) -> tuple[np.ndarray, np.ndarray]:
        """The file's frames `(n, H, W, 3)` uint8 at the grid's instants inside the video, each
        decoded once, and for every step the row of its frame (-1 outside the video)."""
        reader = self._readers.get(self.file(record.video_id))
        times, valid = steps_info(grid, record)
        index = self.frame_index(times[valid], reader.fps, reader.frame_count, record.duration)
        unique, inverse = np.unique(index, return_inverse=True)
        rows = np.full(grid.steps, -1, dtype=np.int64)
        rows[valid] = inverse
        if not len(unique):
            return np.zeros((0, 1, 1, 3), dtype=np.uint8), rows
        return reader.frames(unique), rows

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        return {self.name: (self.channels, steps, self.size, self.size)}


class VideoSource(FramesFromVideo):
    """RGB frames from a video file.

    Args:
        path: the video of each id, e.g. `videos/{video_id}.mp4` (manifest default).
        size: side of the square output, pixels.
        backend: `decord` (fast batch seeking) or `pyav` (fallback).
        cache_mb: decoded frames each DataLoader worker keeps, in MiB: whole videos, least
            recently used dropped first, so that later windows of a kept video need no decoding;
            0 decodes every window from the key frame before it. Worth it for small videos (the
            synthetic benchmark's take about 3 MB each); a video larger than this is not kept.
        resample: spread the file's frames over the annotated duration when their count
            disagrees with it by more than one frame.
    """

    kind = "rgb"
    time_axis = 1

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        decoded, rows = self.decode(record, grid)
        frames = on_steps(square_resize(decoded, self.size), rows)
        # in numpy: cheaper than torch's thread pool for a few small arrays per sample
        rgb = np.multiply(frames.transpose(3, 0, 1, 2), np.float32(1 / 255), dtype=np.float32)
        return {self.name: torch.from_numpy(np.ascontiguousarray(rgb))}


def square_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames `(n, H, W, C)` cut to their centred short-side square and resized to `size`."""
    if not len(frames):
        return np.zeros((0, size, size, *frames.shape[3:]), dtype=frames.dtype)
    height, width = frames.shape[1:3]
    x0, y0, side = (round(v) for v in centre_square(width, height))
    frames = frames[:, y0 : y0 + side, x0 : x0 + side]
    if side == size:
        return np.ascontiguousarray(frames)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])


def on_steps(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`values[rows]` per step, zeros where `rows` is -1 (steps outside the video)."""
    out = np.zeros((len(rows), *values.shape[1:]), dtype=values.dtype)
    inside = rows >= 0
    out[inside] = values[rows[inside]]
    return out
