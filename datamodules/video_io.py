"""Writing videos as real pipelines do: H.264 in mp4 through PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: float, lossless_rgb: bool = False) -> None:
    """Encode RGB frames `(T, H, W, 3)` uint8 as an H.264 mp4 (see `VideoWriter`)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.shape}")
    with VideoWriter(path, fps, lossless_rgb) as writer:
        for frame in frames:
            writer.write(frame)


class VideoWriter:
    """An H.264 mp4 written one RGB frame `(H, W, 3)` uint8 at a time (the size of the first).

    `lossless_rgb` uses `libx264rgb` at crf 0 (exact RGB round trip, for stored flow); otherwise
    standard yuv420p at crf 18, as a camera or a dataset's re-encode would. The bytes are the
    same from run to run: one encoder thread, explicit timestamps, our own RGB to YUV conversion
    (libswscale's converter keeps state between calls in a process) and x264's `ultrafast`
    preset (slower presets' lookahead made the output vary between runs).
    """

    def __init__(self, path: Path, fps: float, lossless_rgb: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.codec, self.pix_fmt, self.crf = (
            ("libx264rgb", "rgb24", "0") if lossless_rgb else ("libx264", "yuv420p", "18")
        )
        self.rate = Fraction(fps).limit_denominator(1001)
        self.container = av.open(str(path), mode="w")
        self.stream: av.VideoStream | None = None
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        if self.stream is None:
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.width, self.stream.height = frame.shape[1], frame.shape[0]
            self.stream.pix_fmt = self.pix_fmt
            self.stream.thread_count = 1
            self.stream.time_base = 1 / self.rate
            self.stream.options = {"crf": self.crf, "preset": "ultrafast"}
        picture = _picture(frame, self.pix_fmt)
        picture.pts = self.count
        self.container.mux(self.stream.encode(picture))
        self.count += 1

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.stream is not None and exc_info[0] is None:
                self.container.mux(self.stream.encode())
        finally:
            self.container.close()


def _picture(frame: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    if pix_fmt == "yuv420p":
        yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    return av.VideoFrame.from_ndarray(frame, format=pix_fmt)
