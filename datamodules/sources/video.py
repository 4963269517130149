"""RGB video: frames on the grid, decoded from mp4 (decord, or PyAV) or read from a folder of frames
(EPIC-KITCHENS' JPEGs), as `(3, T, S, S)` in [0, 1].

A `path` without a file extension (`frames/{video_id}`) names a folder of frames, one image per
frame named by `frames` (`frame_{:010d}.jpg`, numbered from `first_frame`), at the configured `fps`;
it is read on the grid exactly as the video it came from would be. Each frame is cut to the centred
square of its short side and resized to `size`, the view that keypoints and boxes are normalised to
as well. No mean/std normalisation: that belongs to the model, whose backbone knows its own
statistics.

With `frame_store` set, video files are decoded once, whole, into a store of frames already on
the square, which later reads map instead of decoding (`datamodules.sources.frame_store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

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
    steps_info,
)
from datamodules.sources.decoders import Backend, FrameFolder, FrameReader, ReaderOpener
from datamodules.sources.frame_store import FrameStore, StoredFrames, store_folder, to_planes


class FramesFromVideo(Source):
    """A source whose file is a video read frame by frame (RGB video, flow stored as video), or
    a folder of its frames as images (when `path` has no file extension)."""

    channels: ClassVar[int] = 3
    """Planes the source reads of each decoded frame: 3 (RGB), 2 (x and y of quantised flow)."""
    default_frames: ClassVar[tuple[str, ...]]
    """File names of the frames in a frame folder when the config gives none."""

    def __init__(
        self,
        path: str | None = None,
        size: int = 224,
        backend: Backend = "decord",
        frame_store: bool | str = False,
        resample: bool = False,
        fps: float | None = None,
        frames: str | list[str] | None = None,
        first_frame: int = 1,
    ) -> None:
        super().__init__(path, resample)
        if size < 1:
            raise ValueError(f"need size >= 1, got {size}")
        self.size = size
        self.backend = backend
        self.fps = fps
        templates = self.default_frames if frames is None else frames
        self.frames = (templates,) if isinstance(templates, str) else tuple(templates)
        self.first_frame = first_frame
        FrameFolder(self.frames, first_frame, fps)  # a bad template fails at construction
        # private: where frames are kept changes no value (not part of a teacher cache's key)
        self._frame_store = frame_store
        self._store: FrameStore | None = None
        self._readers = self._reader_cache()

    @property
    def layout(self) -> FrameFolder | None:
        """How the frames of a frame folder are named; None when `path` names video files."""
        if self.path is None or Path(str(self.path)).suffix:
            return None
        return FrameFolder(self.frames, self.first_frame, self.fps)

    @property
    def store(self) -> FrameStore | None:
        """The frame store the source reads video files through (None: it decodes them)."""
        return self._store

    def _reader_cache(self) -> ReaderCache[FrameReader]:
        return ReaderCache(ReaderOpener(self.backend, self.layout, self._store))

    def configure(self, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        folder = store_folder(self._frame_store, self.root)
        if folder is not None and not self._reads_videos:
            raise DataError(
                f"modality {self.name!r}: frame_store keeps decoded video files, but {self.path} "
                "names frame folders or arrays, which are read as they are. Fix: remove "
                f"modalities.{self.name}.init_args.frame_store"
            )
        if folder is not None:
            option = f"modalities.{self.name}.init_args.frame_store"
            self._store = FrameStore(folder, self.backend, self.size, self.channels, option)
        self._readers = self._reader_cache()  # the path, now known, may name frame folders

    @property
    def _reads_videos(self) -> bool:
        """Whether `path` names video files (not frame folders, nor arrays)."""
        return self.layout is None

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
        problems = []
        if self._store is not None and (what := self._store.unusable(path)):
            problems.append(self.problem(path, record, what, self._store.fix()))
        if record.duration is None:
            return problems
        expected = expected_frames(record.duration, self._fps(reader, record))
        return [
            *self.length_problem(path, record, reader.frame_count, expected, "frames"),
            *problems,
        ]

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

    def square_frames(
        self, record: VideoRecord, grid: TimeGrid
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The file's frames at the grid's instants inside the video, each read once, on the
        square: `(n, S, S, channels)` uint8 (decoded, or from the frame store); for every step
        the row of its frame (-1 outside the video); and the short side of the file's frames
        (displacements of flow scale by size / side)."""
        reader = self._readers.get(self.file(record.video_id))
        times, valid = steps_info(grid, record)
        fps = self._fps(reader, record)
        index = self.frame_index(times[valid], fps, reader.frame_count, record.duration)
        unique, inverse = np.unique(index, return_inverse=True)
        rows = np.full(grid.steps, -1, dtype=np.int64)
        rows[valid] = inverse
        if not len(unique):
            empty = np.zeros((0, self.size, self.size, self.channels), dtype=np.uint8)
            return empty, rows, self.size
        if isinstance(reader, StoredFrames):
            return reader.frames(unique), rows, reader.side
        decoded = reader.frames(unique)
        return to_planes(decoded, self.size, self.channels), rows, min(decoded.shape[1:3])

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        return {self.name: (self.channels, steps, self.size, self.size)}


class VideoSource(FramesFromVideo):
    """RGB frames from a video file, or from a folder of its frames.

    Args:
        path: the video of each id, e.g. `videos/{video_id}.mp4` (manifest default), or its
            folder of frames, without an extension, e.g. `rgb_frames/{video_id}`.
        size: side of the square output, pixels.
        backend: `decord` (fast batch seeking) or `pyav` (fallback).
        frame_store: decode each video file once, whole, into a store of its frames on the
            square (`size`), which every later read maps instead of decoding from the key frame
            before the window: `true` for `<root>.frame_store/` beside the data root, or a
            folder (relative to the working directory, as `root` is; one store serves any
            dataset, keyed by each video's content). Built by the first read of each video, or
            ahead of training by `crossdistill frame-store`. `false`: decode every window.
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
        square, rows, _ = self.square_frames(record, grid)
        frames = on_steps(square, rows)
        # in numpy: cheaper than torch's thread pool for a few small arrays per sample
        rgb = np.multiply(frames.transpose(3, 0, 1, 2), np.float32(1 / 255), dtype=np.float32)
        return {self.name: torch.from_numpy(np.ascontiguousarray(rgb))}


def on_steps(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`values[rows]` per step, zeros where `rows` is -1 (steps outside the video)."""
    out = np.zeros((len(rows), *values.shape[1:]), dtype=values.dtype)
    inside = rows >= 0
    out[inside] = values[rows[inside]]
    return out
