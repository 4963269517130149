"""What every modality source shares: file paths, problems with fixes, per-process reader caches.

A source maps `(VideoRecord, TimeGrid)` to tensors. It is configured from YAML (one class per
modality, chosen by `class_path`), then bound by the datamodule to the dataset's root folder,
where the synthetic benchmark's manifest fills in what the config leaves out. `check` finds
what would break loading (missing, undecodable, wrong length or shape) cheaply enough to run on
every video before training starts, so that errors surface in the main process with the file
named, not in a DataLoader worker.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, frame_indices


class DataError(ValueError):
    """A data file that cannot be used as configured; the message names the file and the fix."""


@dataclass(frozen=True)
class Problem:
    """One thing that would break loading, with the file it concerns and what to do about it."""

    path: str
    what: str
    fix: str
    video_id: str | None = None
    modality: str | None = None

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"video {self.video_id!r}" if self.video_id else "",
                f"modality {self.modality!r}" if self.modality else "",
            )
            if part
        )
        return f"{self.path}: {self.what}{f' ({where})' if where else ''}. Fix: {self.fix}"

    def error(self) -> DataError:
        return DataError(str(self))


T = TypeVar("T")

_INHERITED_READERS: list[Any] = []
"""Readers a forked process inherited from its parent's caches, kept alive until it exits.

Closing one there can hang the process for good: a decord reader's decoding thread is not
forked, and its destructor then waits in `pthread_cond_destroy` for that thread to leave the
packet queue's condition variable it was waiting on in the parent (a DataLoader worker forked
after a `num_workers: 0` pass hung in its first `get`). Their memory is the parent's, shared
copy-on-write, so keeping them costs nothing."""


class ReaderCache(Generic[T]):
    """Open readers of one process, keyed by path, least recently used dropped first.

    Readers hold file handles and decoder state that must never be shared between DataLoader
    workers: the cache remembers which process filled it and starts empty in any other (a forked
    worker), and it pickles empty (a spawned worker). It keeps at most `capacity` readers.
    """

    def __init__(self, open_reader: Callable[[Path], T], capacity: int = 32) -> None:
        self.open_reader = open_reader
        self.capacity = capacity
        self._pid = os.getpid()
        self._readers: OrderedDict[Hashable, T] = OrderedDict()

    def get(self, path: Path) -> T:
        if self._pid != os.getpid():
            # inherited readers are set aside, never closed (see `_INHERITED_READERS`)
            _INHERITED_READERS.append(self._readers)
            self._pid, self._readers = os.getpid(), OrderedDict()
        reader = self._readers.pop(path, None)
        if reader is None:
            reader = self.open_reader(path)
        self._readers[path] = reader
        while len(self._readers) > self.capacity:
            self._readers.popitem(last=False)  # the least recently used
        return reader

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("open_reader", "capacity")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


class Source:
    """Base of the modality sources.

    Args:
        path: file of each video, relative to the dataset root (or absolute), with `{video_id}`
            in it, e.g. `videos/{video_id}.mp4`; the synthetic benchmark's manifest gives it.
        resample: stretch a file whose length disagrees with the annotated duration over that
            duration (linear for arrays, the sample covering each instant for frames) instead of
            refusing it.
    """

    kind: ClassVar[str]
    """What the tensor holds: rgb, flow, keypoints, boxes or features (selects the transforms)."""
    time_axis: ClassVar[int]
    """Axis of the output tensor that runs over the grid's steps (the collate pads it)."""

    def __init__(self, path: str | None = None, resample: bool = False) -> None:
        self.path = path
        self.resample = resample
        self.name = self.kind
        self.root = Path(".")

    def bind(self, name: str, root: Path, manifest: dict[str, Any] | None) -> None:
        """Attach to a dataset: its modality name, root folder and (synthetic) manifest."""
        self.name, self.root = name, Path(root)
        entry = (manifest or {}).get("modalities", {}).get(name, {})
        if self.path is None:
            self.path = entry.get("path")
        if self.path is None:
            raise DataError(
                f"modality {name!r}: no path for its files. Fix: set "
                f"modalities.{name}.init_args.path, e.g. '{self.kind}/{{video_id}}.npy' under root"
            )
        self.configure(entry, manifest or {})

    def configure(self, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        """Fill options the config left out from the manifest entry; check the rest."""

    def file(self, video_id: str) -> Path:
        return self.root / str(self.path).format(video_id=video_id)

    deep_check: bool = False
    """Decode every frame in `check` (`crossdistill data-check --deep`), not just enough to
    prove the file complete: finds damage in the middle of a video."""

    def check_across(self, records: list[VideoRecord]) -> dict[str, list[Problem]]:
        """Problems only visible across files (after `check` of each): video id -> problems."""
        return {}

    def check(self, record: VideoRecord) -> list[Problem]:
        """What would break loading this video's file (empty when it is fine)."""
        path = self.file(record.video_id)
        if not path.exists():
            return [
                self.problem(
                    path,
                    record,
                    "file not found",
                    f"restore the file, correct modalities.{self.name}.init_args.path "
                    f"({self.path}), drop the video from the annotations, or set "
                    "`missing: skip` to leave it out",
                )
            ]
        try:
            return self.check_file(path, record)
        except Exception as err:  # an unreadable file is a finding, not a crash of the check
            return [
                self.problem(
                    path,
                    record,
                    f"cannot be read ({err})",
                    "re-create the file (re-encode, re-extract or re-download it), or set "
                    "`missing: skip` to leave the video out",
                )
            ]

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        raise NotImplementedError

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        """Tensors of this modality on the grid; steps outside the video are zeros."""
        raise NotImplementedError

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        """Shape of each output tensor of one sample of `steps` steps (for building models)."""
        raise NotImplementedError

    def duration(self, record: VideoRecord) -> float | None:
        """The video's length in seconds read from the file, for records that lack a duration."""
        return None

    # helpers for subclasses

    def problem(self, path: Path, record: VideoRecord, what: str, fix: str) -> Problem:
        return Problem(str(path), what, fix, record.video_id, self.name)

    def length_problem(
        self, path: Path, record: VideoRecord, length: int, expected: int, unit: str
    ) -> list[Problem]:
        """A file whose length is more than one sample off the annotated duration, unless the
        config resamples it."""
        if self.resample or record.duration is None or abs(length - expected) <= 1:
            return []
        return [
            self.problem(
                path,
                record,
                f"has {length} {unit} but the annotated duration of {record.duration:g} s needs "
                f"{expected} (±1)",
                "correct the duration in the annotation file or re-extract the file; or set "
                f"modalities.{self.name}.init_args.resample: true to stretch it over the duration",
            )
        ]

    def frame_index(
        self, times: np.ndarray, fps: float, length: int, duration: float
    ) -> np.ndarray:
        """The sample of a frame-rate file covering each instant (the file spans `duration` when
        resampling)."""
        rate = length / duration if self.resample else fps
        return np.clip(frame_indices(times, rate), 0, length - 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, path={self.path!r})"


def centre_square(width: float, height: float) -> tuple[float, float, float]:
    """`(x0, y0, side)` of the centred square of the short side, the view every image modality
    shares, so normalised coordinates of keypoints and boxes match the pixels of the video."""
    side = min(width, height)
    return (width - side) / 2.0, (height - side) / 2.0, side


def square_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames `(n, H, W, C)` cut to their centred short-side square and resized to `size`."""
    import cv2

    if not len(frames):
        return np.zeros((0, size, size, *frames.shape[3:]), dtype=frames.dtype)
    height, width = frames.shape[1:3]
    x0, y0, side = (round(v) for v in centre_square(width, height))
    frames = frames[:, y0 : y0 + side, x0 : x0 + side]
    if side == size:
        return np.ascontiguousarray(frames)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])


_NPY_HEADER_LOCK = threading.Lock()
"""numpy parses a .npy header with `ast.literal_eval`, which CPython 3.11 does not make
thread-safe: the data check opens files from a thread pool, and two parses at once can fail with
"AST constructor recursion depth mismatch". Opening the memory map is only the header's work."""


def load_array(path: Path) -> np.ndarray:
    """An npy file, memory-mapped so that reading a window touches only its rows."""
    with _NPY_HEADER_LOCK:
        return np.load(path, mmap_mode="r", allow_pickle=False)


def non_finite(array: np.ndarray, chunk: int = 4096) -> int:
    """How many NaN or Inf values an array holds, read in chunks of rows."""
    count = 0
    for start in range(0, array.shape[0], chunk):
        count += int(np.count_nonzero(~np.isfinite(array[start : start + chunk])))
    return count


def steps_info(grid: TimeGrid, record: VideoRecord) -> tuple[np.ndarray, np.ndarray]:
    """The grid's instants and which of them lie inside the video."""
    if record.duration is None:
        raise DataError(f"video {record.video_id!r} has no duration; the datamodule sets one")
    return grid.times(), grid.valid(record.duration)
