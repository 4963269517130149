"""Fixtures shared by the data-layer tests: a tiny synthetic benchmark and index-coded videos.

The index-coded video encodes each frame's number in its pixels (two horizontal bands, one per
base-16 digit, at grey levels far enough apart to survive H.264), so a test can read back which
frame a loader returned. It is written with a key frame every 12 frames and B-frames, so that
random access really seeks.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from datamodules.grid import TimeGrid
from datamodules.synthetic import SyntheticConfig, generate_benchmark
from datamodules.video_io import write_video

TINY = SyntheticConfig(videos=6, min_duration=8.0, max_duration=12.0)
_generated: dict[str, Path] = {}


def tiny_benchmark(factory: pytest.TempPathFactory) -> Path:
    """The tiny benchmark, generated once per test session (copy it before changing files)."""
    if "root" not in _generated:
        root = factory.mktemp("tiny_benchmark")
        generate_benchmark(root, TINY, workers=2)
        _generated["root"] = root
    return _generated["root"]


def copy_benchmark(root: Path, destination: Path) -> Path:
    shutil.copytree(root, destination)
    return destination


def index_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB frames whose top band shows `index % 16` and bottom band `index // 16`."""
    if count > 256:
        raise ValueError("two base-16 digits encode at most 256 frames")
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        frames[index, : height // 2] = (index % 16) * 16 + 8
        frames[index, height // 2 :] = (index // 16) * 16 + 8
    return frames


INDEX_VIDEO_GRIDS = [
    TimeGrid(0.0, 3.2, 32),  # one step per frame
    TimeGrid(4.0, 10.4, 32),  # two frames per step
    TimeGrid(11.3, 12.9, 16),  # runs past the end (12 s of 120 frames at 10 fps): padding
    TimeGrid(2.05, 2.85, 16),  # half a frame per step, off the frame grid
]
"""Windows on a 12 s index video (`write_index_video(path, 120)`) that exercise the grid rules."""


def write_index_video(path: Path, count: int, fps: float = 10.0, height: int = 48) -> Path:
    """An H.264 mp4 of `index_frames`, key frame every 12 frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = 64, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "g": "12", "keyint_min": "12"}
        for frame in index_frames(count, height):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def read_indices(rgb: torch.Tensor) -> np.ndarray:
    """Frame numbers shown by `(3, T, H, W)` RGB in [0, 1] (of index-coded frames)."""
    pixels = rgb.mean(0).numpy() * 255.0
    height = pixels.shape[1]
    low = np.rint((pixels[:, height // 4, :].mean(-1) - 8) / 16).astype(int)
    high = np.rint((pixels[:, 3 * height // 4, :].mean(-1) - 8) / 16).astype(int)
    return high * 16 + low


FEATURE_DIMS = {"rgb": 128, "flow": 128, "pose": 64}


def with_random_features(root: Path, destination: Path) -> Path:
    """A copy of a benchmark with random `features/<modality>/<id>.npy` (one row per frame), as
    `configs/data/synthetic_features.yaml` expects; for exercising feature-level configs."""
    import json

    copy = copy_benchmark(root, destination)
    database = json.loads((copy / "annotations" / "activitynet.json").read_text())["database"]
    rng = np.random.default_rng(0)
    for modality, dim in FEATURE_DIMS.items():
        folder = copy / "features" / modality
        folder.mkdir(parents=True)
        for video_id, video in database.items():
            steps = round(video["duration"] * video["fps"])
            np.save(folder / f"{video_id}.npy", rng.normal(size=(steps, dim)).astype(np.float32))
    return copy


def textured_frames(shift: tuple[int, int], count: int = 6, side: int = 40) -> np.ndarray:
    """A smooth random texture moving by `shift` (x, y) pixels per frame."""
    rng = np.random.default_rng(sum(shift))
    texture = cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (7, 7), 0)
    return np.stack(
        [np.roll(texture, (t * shift[1], t * shift[0]), axis=(0, 1)) for t in range(count)]
    )


def write_videos(folder: Path, fps: float = 10.0) -> Path:
    """Two 6-frame 40x40 videos of moving texture: `left.mp4` (x 1 px per frame) and `down.mp4`
    (x 1, y 2), for flow."""
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / "left.mp4", textured_frames((1, 0)), fps)
    write_video(folder / "down.mp4", textured_frames((1, 2)), fps)
    return folder
