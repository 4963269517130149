"""Frame-accurate random access to video files, with decord or (fallback) PyAV.

Both readers give the same thing: the frame rate and frame count of the file, and the RGB
frames `(n, H, W, 3)` uint8 at given indices. decord seeks and decodes a batch in C++; PyAV
seeks to the key frame before the first index and decodes forward, identifying frames by their
timestamps, for builds where decord is missing or misreads a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np

Backend = Literal["decord", "pyav"]


class FrameReader(Protocol):
    fps: float
    frame_count: int
    nbytes: int
    """Bytes of decoded frames the reader holds (0 for streaming readers)."""

    def frames(self, indices: np.ndarray) -> np.ndarray:
        """RGB frames at sorted, unique indices, `(n, H, W, 3)` uint8."""
        ...


class DecordReader:
    nbytes = 0

    def __init__(self, path: Path) -> None:
        import decord

        # one decoding thread: DataLoader workers are the parallelism
        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        self.fps = float(self._reader.get_avg_fps())
        self.frame_count = len(self._reader)

    def frames(self, indices: np.ndarray) -> np.ndarray:
        return self._reader.get_batch(indices.tolist()).asnumpy()


class PyAVReader:
    nbytes = 0

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


def open_reader(path: Path, backend: Backend) -> FrameReader:
    """A reader for `path`; decoder errors are re-raised as ValueError saying which backend."""
    try:
        return DecordReader(path) if backend == "decord" else PyAVReader(path)
    except Exception as err:
        raise ValueError(f"{backend} cannot open it: {err}") from err


class WholeVideo:
    """Every frame of a video, decoded once and kept: later windows are lookups instead of
    decodes from the previous key frame (for datasets of small videos)."""

    def __init__(self, reader: FrameReader) -> None:
        self.fps, self.frame_count = reader.fps, reader.frame_count
        self._frames = reader.frames(np.arange(reader.frame_count))
        self.nbytes = self._frames.nbytes

    def frames(self, indices: np.ndarray) -> np.ndarray:
        return self._frames[indices]


def decoded_bytes(path: Path, frame_count: int) -> int:
    """Size of a video's frames decoded to RGB, from its header."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return frame_count * stream.width * stream.height * 3


class ReaderOpener:
    """Picklable `path -> reader` (a lambda would not reach spawned workers): a streaming
    reader, or a `WholeVideo` when the decoded video fits in `keep_bytes`."""

    def __init__(self, backend: Backend, keep_bytes: int = 0) -> None:
        self.backend = backend
        self.keep_bytes = keep_bytes

    def __call__(self, path: Path) -> FrameReader:
        reader = open_reader(path, self.backend)
        if self.keep_bytes and decoded_bytes(path, reader.frame_count) <= self.keep_bytes:
            return WholeVideo(reader)
        return reader
