"""Frame-accurate random access to video files (decord or, fallback, PyAV) and frame folders.

Every reader gives the same thing: the frame rate and frame count, and the RGB frames
`(n, H, W, 3)` uint8 at given indices. decord seeks and decodes a batch in C++; PyAV seeks to
the key frame before the first index and decodes forward, identifying frames by their
timestamps, for builds where decord is missing or misreads a file. A frame folder (EPIC-KITCHENS'
`frame_0000000001.jpg`, ..., the `flow_x_00001.jpg`/`flow_y_00001.jpg` pairs of TSN and
denseflow) is a video whose frames are image files: `FrameFolder` names them, and its frame rate
comes from the config, as a folder carries none.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from datamodules.sources.frame_store import FrameStore

Backend = Literal["decord", "pyav"]


class FrameReader(Protocol):
    fps: float | None
    """Frames per second (None for a frame folder configured without one)."""
    frame_count: int

    def frames(self, indices: np.ndarray) -> np.ndarray:
        """RGB frames at sorted, unique indices, `(n, H, W, 3)` uint8."""
        ...


class DecordReader:
    def __init__(self, path: Path) -> None:
        import decord

        # one decoding thread: DataLoader workers are the parallelism
        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        self.fps = float(self._reader.get_avg_fps())
        self.frame_count = len(self._reader)

    def frames(self, indices: np.ndarray) -> np.ndarray:
        return self._reader.get_batch(indices.tolist()).asnumpy()


class PyAVReader:
    def __init__(self, path: Path) -> None:
        import av

        self._container = av.open(str(path))
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = 1
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate:
            raise ValueError("the video stream has no frame rate")
        self.fps = float(rate)
        self._time_base = float(self._stream.time_base)
        self._start = self._stream.start_time or 0
        self.frame_count = self._stream.frames or self._count_frames()

    def _count_frames(self) -> int:
        count = sum(1 for packet in self._container.demux(self._stream) if packet.size)
        self._container.seek(0)
        return count

    def stream(self) -> Iterator[np.ndarray]:
        """Every frame in order, from the first, as RGB `(H, W, 3)` uint8."""
        return (rgb for _, rgb in self.numbered())

    def numbered(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every frame in order, from the first, with the index `frames` knows it by."""
        self._container.seek(self._start, stream=self._stream, backward=True, any_frame=False)
        for frame in self._container.decode(self._stream):
            yield self._index(frame.pts), frame.to_ndarray(format="rgb24")

    def _index(self, pts: int) -> int:
        return round((pts - self._start) * self._time_base * self.fps)

    def frames(self, indices: np.ndarray) -> np.ndarray:
        first, last = int(indices[0]), int(indices[-1])
        near_first = self._start + round(first / self.fps / self._time_base)
        wanted = {int(i) for i in indices}
        got: dict[int, np.ndarray] = {}
        # from the key frame before the first index; if that seek overshoots, from the start
        for seek_to in (near_first, self._start):
            self._container.seek(seek_to, stream=self._stream, backward=True, any_frame=False)
            got = {}
            for position, frame in enumerate(self._container.decode(self._stream)):
                index = self._index(frame.pts)
                if position == 0 and index > first:
                    break
                if index in wanted:
                    got[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
            if len(got) == len(wanted):
                return np.stack([got[int(i)] for i in indices])
        missing = sorted(wanted - set(got))
        raise ValueError(f"frames {missing[:5]} could not be decoded")


@dataclass(frozen=True)
class FrameFolder:
    """How the frames of one video are named inside its folder.

    Args:
        templates: one image per frame (`frame_{:010d}.jpg`, RGB), or two grayscale images per
            frame (`flow_x_{:05d}.jpg`, `flow_y_{:05d}.jpg`: the x and y planes of quantised
            flow, returned as red and green with blue 128, as a flow video stores them). Each
            has one integer field, the frame number, and may name a subfolder
            (`u/frame_{:010d}.jpg`).
        first: the number of the first frame (1 in EPIC-KITCHENS, TSN and denseflow).
        fps: frames per second of the folder's frames.
    """

    templates: tuple[str, ...]
    first: int = 1
    fps: float | None = None

    def __post_init__(self) -> None:
        if len(self.templates) not in (1, 2):
            raise ValueError(
                f"a frame folder names its frames with 1 template (RGB) or 2 (flow x, y), got "
                f"{list(self.templates)}"
            )
        for template in self.templates:
            frame_name(template, self.first)  # one integer field, or a ValueError
        if self.first < 0 or (self.fps is not None and self.fps <= 0):
            raise ValueError(f"need first >= 0 and fps > 0, got {self.first}, {self.fps}")

    def names(self, index: int) -> list[str]:
        """The file name(s) of frame `index` (0-based) relative to the folder."""
        return [frame_name(template, self.first + index) for template in self.templates]

    def numbers(self, folder: Path, template: str) -> list[int]:
        """The frame numbers of the files matching `template` in `folder`, sorted."""
        pattern = _template_pattern(template)
        parent = folder / Path(template).parent
        if not parent.is_dir():
            return []
        numbers = (pattern.fullmatch(name) for name in (p.name for p in parent.iterdir()))
        return sorted(int(match.group(1)) for match in numbers if match)


def frame_name(template: str, number: int) -> str:
    """`template` with its one integer field set to `number` (`frame_{:010d}.jpg`, 7 ->
    `frame_0000000007.jpg`; the field may be named, as in `{i:05d}`)."""
    parts = list(string.Formatter().parse(template))
    fields = [spec for _, field, spec, _ in parts if field is not None]
    if len(fields) != 1:
        raise ValueError(
            f"frame template {template!r} needs exactly one field for the frame number, e.g. "
            "'frame_{:010d}.jpg'"
        )
    try:
        number_text = format(number, fields[0] or "d")
    except ValueError as err:
        raise ValueError(f"frame template {template!r}: {err}") from err
    return parts[0][0] + number_text + "".join(text for text, *_ in parts[1:])


def _template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching the file names of `template`'s last component, the frame
    number in group 1."""
    parts = list(string.Formatter().parse(Path(template).name))
    before, after = parts[0][0], "".join(text for text, *_ in parts[1:])
    return re.compile(re.escape(before) + r"(\d+)" + re.escape(after))


class FrameFolderReader:
    """The frames of a folder of images, numbered without gaps from `layout.first`."""

    def __init__(self, folder: Path, layout: FrameFolder) -> None:
        if not folder.is_dir():
            raise ValueError("not a folder of frames")
        self.folder, self.layout, self.fps = folder, layout, layout.fps
        numbers = layout.numbers(folder, layout.templates[0])
        self.frame_count = numbers[-1] - layout.first + 1 if numbers else 0

    def frames(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self._frame(int(index)) for index in indices])

    def _frame(self, index: int) -> np.ndarray:
        import cv2

        planes = []
        for name in self.layout.names(index):
            colour = cv2.IMREAD_COLOR if len(self.layout.templates) == 1 else cv2.IMREAD_GRAYSCALE
            image = cv2.imread(str(self.folder / name), colour)
            if image is None:
                raise ValueError(f"frame {index} ({self.folder / name}) is missing or unreadable")
            planes.append(image)
        if len(planes) == 1:
            return cv2.cvtColor(planes[0], cv2.COLOR_BGR2RGB)
        if planes[0].shape != planes[1].shape:
            raise ValueError(
                f"frame {index}: {self.layout.names(index)} differ in size "
                f"({planes[0].shape} and {planes[1].shape})"
            )
        return np.stack([*planes, np.full_like(planes[0], 128)], axis=-1)


def open_reader(path: Path, backend: Backend, folder: FrameFolder | None = None) -> FrameReader:
    """A reader for `path` (a folder of frames when `folder` names them); decoder errors are
    re-raised as ValueError saying which backend."""
    if folder is not None:
        return FrameFolderReader(path, folder)
    try:
        return DecordReader(path) if backend == "decord" else PyAVReader(path)
    except Exception as err:
        raise ValueError(f"{backend} cannot open it: {err}") from err


class ReaderOpener:
    """Picklable `path -> reader` (a lambda would not reach spawned workers): a streaming
    reader, frame folders when `folder` names their frames, or the frames of a frame store
    (`datamodules.sources.frame_store`, built on first use) when `store` is given."""

    def __init__(
        self, backend: Backend, folder: FrameFolder | None = None, store: FrameStore | None = None
    ) -> None:
        self.backend = backend
        self.folder = folder
        self.store = store

    def __call__(self, path: Path) -> FrameReader:
        if self.store is not None:
            return self.store.open(path)
        return open_reader(path, self.backend, self.folder)
