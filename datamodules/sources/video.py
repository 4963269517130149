"""RGB video: frames on the grid, decoded from mp4 (decord, or PyAV) or read from a folder of frames
(EPIC-KITCHENS' JPEGs), as `(3, T, S, S)` in [0, 1].

A `path` without a file extension (`frames/{video_id}`) names a folder of frames, one image per
frame named by `frames` (`frame_{:010d}.jpg`, numbered from `first_frame`), at the configured `fps`;
it is read on the grid exactly as the video it came from would be. Each frame is cut to the centred
square of its short side and resized to `size`, the view that keypoints and boxes are normalised to
as well. No mean/std normalisation: that belongs to the model, whose backbone knows its own
statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, expected_frames
from datamodules.sources.base import (
    DataError,
    Problem,
    ReaderCache,
    Source,
    centre_square,
    steps_info,
)
from datamodules.sources.decoders import Backend, FrameFolder, FrameReader, ReaderOpener


class FramesFromVideo(Source):
    """A source whose file is a video read frame by frame (RGB video, flow stored as video), or
    a folder of its frames as images (when `path` has no file extension)."""

    channels: ClassVar[int] = 3
    default_frames: ClassVar[tuple[str, ...]]
    """File names of the frames in a frame folder when the config gives none."""

    def __init__(
        self,
        path: str | None = None,
        size: int = 224,
        backend: Backend = "decord",
        cache_mb: int = 0,
        resample: bool = False,
        fps: float | None = None,
        frames: str | list[str] | None = None,
        first_frame: int = 1,
    ) -> None:
        super().__init__(path, resample)
        if size < 1 or cache_mb < 0:
            raise ValueError(f"need size >= 1 and cache_mb >= 0, got {size}, {cache_mb}")
        self.size = size
        self.backend = backend
        self.fps = fps
        templates = self.default_frames if frames is None else frames
        self.frames = (templates,) if isinstance(templates, str) else tuple(templates)
        self.first_frame = first_frame
        FrameFolder(self.frames, first_frame, fps)  # a bad template fails at construction
        self._cache_bytes = cache_mb * 2**20
        self._readers = self._reader_cache()

    @property
    def layout(self) -> FrameFolder | None:
        """How the frames of a frame folder are named; None when `path` names video files."""
        if self.path is None or Path(str(self.path)).suffix:
            return None
        return FrameFolder(self.frames, self.first_frame, self.fps)

    def _reader_cache(self) -> ReaderCache[FrameReader]:
        opener = ReaderOpener(self.backend, self._cache_bytes, self.layout)
        return ReaderCache(opener, budget_bytes=self._cache_bytes)

    def configure(self, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        self._readers = self._reader_cache()  # the path, now known, may name frame folders

    def _open(self, path: Path) -> FrameReader:
        """A reader outside the cache: the main process must not hold readers that forked
        workers inherit."""
        return ReaderOpener(self.backend, folder=self.layout)(path)

    def _fps(self, reader: FrameReader, record: VideoRecord) -> float:
        fps = reader.fps or record.fps
        if not fps:
            raise DataError(
                f"{self.file(record.video_id)}: the frame rate of the frame folder is unknown. "
                f"Fix: set modalities.{self.name}.init_args.fps, or give fps in the annotations"
            )
        return fps

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        reader = self._open(path)
        if self.layout is not None and (problems := self._folder_problems(path, record)):
            return problems
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
        expected = expected_frames(record.duration, self._fps(reader, record))
        return self.length_problem(path, record, reader.frame_count, expected, "frames")

    def _folder_problems(self, path: Path, record: VideoRecord) -> list[Problem]:
        """Frame files missing from the numbering, or x and y planes that disagree."""
        layout = self.layout
        assert layout is not None
        numbers = [layout.numbers(path, template) for template in layout.templates]
        fix = (
            f"re-extract the frames, or set modalities.{self.name}.init_args.frames (now "
            f"{list(layout.templates)}) and first_frame (now {layout.first}) to their naming"
        )
        problems = []
        for template, found in zip(layout.templates, numbers, strict=True):
            if not found:
                problems.append(
                    self.problem(path, record, f"has no frames named {template!r}", fix)
                )
                continue
            if found[0] < layout.first:
                what = f"{template!r} numbers frames from {found[0]}, not {layout.first}"
                problems.append(self.problem(path, record, what, fix))
            missing = sorted(set(range(layout.first, found[-1] + 1)) - set(found))
            if missing:
                listed = ", ".join(str(n) for n in missing[:5]) + (
                    ", ..." if len(missing) > 5 else ""
                )
                what = (
                    f"misses {len(missing)} frame(s) named {template!r} ({listed}) of "
                    f"{layout.first}..{found[-1]}"
                )
                problems.append(self.problem(path, record, what, fix))
        if len(numbers) == 2 and numbers[0] and numbers[1] and numbers[0] != numbers[1]:
            what = (
                f"has {len(numbers[0])} frames named {layout.templates[0]!r} but "
                f"{len(numbers[1])} named {layout.templates[1]!r}"
            )
            problems.append(self.problem(path, record, what, "re-extract the flow of the video"))
        return problems

    def duration(self, record: VideoRecord) -> float | None:
        reader = self._open(self.file(record.video_id))
        return reader.frame_count / self._fps(reader, record)

    def decode(self, record: VideoRecord, grid: TimeGrid) -> tuple[np.ndarray, np.ndarray]:
        """The file's frames `(n, H, W, 3)` uint8 at the grid's instants inside the video, each
        decoded once, and for every step the row of its frame (-1 outside the video)."""
        reader = self._readers.get(self.file(record.video_id))
        times, valid = steps_info(grid, record)
        fps = self._fps(reader, record)
        index = self.frame_index(times[valid], fps, reader.frame_count, record.duration)
        unique, inverse = np.unique(index, return_inverse=True)
        rows = np.full(grid.steps, -1, dtype=np.int64)
        rows[valid] = inverse
        if not len(unique):
            return np.zeros((0, 1, 1, 3), dtype=np.uint8), rows
        return reader.frames(unique), rows

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        return {self.name: (self.channels, steps, self.size, self.size)}


class VideoSource(FramesFromVideo):
    """RGB frames from a video file, or from a folder of its frames.

    Args:
        path: the video of each id, e.g. `videos/{video_id}.mp4` (manifest default), or its
            folder of frames, without an extension, e.g. `rgb_frames/{video_id}`.
        size: side of the square output, pixels.
        backend: `decord` (fast batch seeking) or `pyav` (fallback).
        cache_mb: decoded frames each DataLoader worker keeps, in MiB: whole videos, least
            recently used dropped first, so that later windows of a kept video need no decoding;
            0 decodes every window from the key frame before it. Worth it for small videos (the
            synthetic benchmark's take about 3 MB each); a video larger than this is not kept.
        resample: spread the file's frames over the annotated duration when their count
            disagrees with it by more than one frame.
        fps: frame rate of frame folders (default the annotation's; videos carry their own).
        frames: file name of each frame in a frame folder, with one integer field for its
            number: `frame_{:010d}.jpg` (EPIC-KITCHENS, the default), `img_{:05d}.jpg` (TSN,
            mmaction2).
        first_frame: the number of a folder's first frame (1 in EPIC-KITCHENS and TSN).
    """

    kind = "rgb"
    time_axis = 1
    default_frames = ("frame_{:010d}.jpg",)

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
