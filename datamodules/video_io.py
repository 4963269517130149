"""Writing videos as real pipelines do: H.264 in mp4 through PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: float, lossless_rgb: bool = False) -> None:
    """Encode RGB frames `(T, H, W, 3)` uint8 as an H.264 mp4.

    `lossless_rgb` uses `libx264rgb` at crf 0 (exact RGB round trip, for stored flow); otherwise
    standard yuv420p at crf 18, as a camera or a dataset's re-encode would. One encoder thread
    keeps the bytes identical from run to run.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, pix_fmt, crf = (
        ("libx264rgb", "rgb24", "0") if lossless_rgb else ("libx264", "yuv420p", "18")
    )
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=_fps_fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.thread_count = 1
        stream.options = {"crf": crf, "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _fps_fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
