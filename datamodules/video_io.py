"""Writing videos as real pipelines do: H.264 in mp4 through PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: float, lossless_rgb: bool = False) -> None:
    """Encode RGB frames `(T, H, W, 3)` uint8 as an H.264 mp4.

    `lossless_rgb` uses `libx264rgb` at crf 0 (exact RGB round trip, for stored flow); otherwise
    standard yuv420p at crf 18, as a camera or a dataset's re-encode would. The bytes are the
    same from run to run: one encoder thread, explicit timestamps, our own RGB to YUV conversion
    (libswscale's converter keeps state between calls in a process) and x264's `ultrafast`
    preset (slower presets' lookahead made the output vary between runs).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, pix_fmt, crf = (
        ("libx264rgb", "rgb24", "0") if lossless_rgb else ("libx264", "yuv420p", "18")
    )
    with av.open(str(path), mode="w") as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.thread_count = 1
        stream.time_base = 1 / rate
        stream.options = {"crf": crf, "preset": "ultrafast"}
        for index, frame in enumerate(frames):
            picture = _picture(frame, pix_fmt)
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode())


def _picture(frame: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    if pix_fmt == "yuv420p":
        yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    return av.VideoFrame.from_ndarray(frame, format=pix_fmt)
