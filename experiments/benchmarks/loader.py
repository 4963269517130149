"""Clips per second of `MultimodalDataModule` against a straightforward PyAV decode, in one run.

Both paths produce the same clips: 16 consecutive frames of RGB and flow at 64x64 from the
synthetic benchmark, as float tensors `(3, 16, 64, 64)` in [0, 1] and `(2, 16, 64, 64)` in
pixels / bound, for the same list of randomly placed clips. The straightforward path opens both
mp4s per clip with PyAV and decodes from the first frame up to the clip's last, as a first
script would. The datamodule path is the one training uses (cached decord readers per worker,
batch frame access), with no augmentation so that both do the same work, with 0 and 2 workers;
then with the decoded-video cache (`cache_mb`), whose first pass decodes whole videos and whose
second pass over the same clips is served from memory.

    .venv/bin/python experiments/benchmarks/loader.py [--root data/synthetic] [--clips 400]

Without `--root`, a 24-video benchmark is generated into a temporary folder. Prints clips/s of
each path and the ratios; worker start-up is included in the timings.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from datamodules.datamodule import MultimodalDataModule
from datamodules.grid import TimeGrid
from datamodules.optical_flow import dequantize_flow
from datamodules.sampling import Window
from datamodules.sources import FlowSource, VideoSource
from datamodules.synthetic import SyntheticConfig, generate_benchmark

FRAMES = 16
SIZE = 64


class FixedClips:
    """A window sampler over a given list of windows (the clips both paths decode)."""

    random = False

    def __init__(self, clips: list[Window]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def windows(self, index: int, rng: np.random.Generator | None) -> list[Window]:
        return [self.clips[index]]


def datamodule(root: Path, workers: int, batch_size: int, cache_mb: int) -> MultimodalDataModule:
    dm = MultimodalDataModule(
        root=root,
        modalities={
            "rgb": VideoSource(size=SIZE, cache_mb=cache_mb),
            "flow": FlowSource(size=SIZE, cache_mb=cache_mb),
        },
        window_seconds=1.0,
        window_steps=FRAMES,
        augment=None,
        batch_size=batch_size,
        num_workers=workers,
    )
    dm.setup("fit")
    return dm


def choose_clips(dm: MultimodalDataModule, count: int, seed: int) -> list[Window]:
    """Random clips of FRAMES consecutive frames, on frame boundaries of each video."""
    rng = np.random.default_rng(seed)
    records = dm.datasets["train"].sampler.records  # type: ignore[attr-defined]
    clips = []
    for _ in range(count):
        record = records[rng.integers(len(records))]
        fps = record.fps or 10.0
        start = int(rng.integers(0, round(record.duration * fps) - FRAMES + 1))
        grid = TimeGrid(start / fps, (start + FRAMES) / fps, FRAMES)
        clips.append(Window(record, grid, 0))
    return clips


def run_datamodule(dm: MultimodalDataModule, clips: list[Window], passes: int) -> list[float]:
    """Clips per second through the datamodule's training DataLoader, per pass over the clips
    (its workers persist between passes, with their readers and caches)."""
    dm.datasets["train"].sampler = FixedClips(clips)
    loader = dm.train_dataloader()
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        seen = sum(batch["inputs"]["rgb"].shape[0] for batch in loader)
        assert seen == len(clips)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def pyav_clip(path: Path, first: int) -> np.ndarray:
    """Frames first..first+FRAMES-1 of an mp4, decoded from the start with PyAV."""
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= first:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == FRAMES:
                break
    return np.stack(frames)


def run_pyav(root: Path, clips: list[Window], bound: float) -> float:
    """Clips per second of the straightforward path, producing the same tensors."""
    start = time.perf_counter()
    for window in clips:
        video_id = window.record.video_id
        first = round(window.grid.t0 * (window.record.fps or 10.0))
        rgb = pyav_clip(root / "videos" / f"{video_id}.mp4", first)
        flow = dequantize_flow(pyav_clip(root / "flow" / f"{video_id}.mp4", first), bound)
        torch.from_numpy(rgb).permute(3, 0, 1, 2).float().div(255.0)
        torch.from_numpy(flow / bound).permute(3, 0, 1, 2)
    return len(clips) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="synthetic benchmark (default: generate one)")
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_mb", type=int, default=1024, help="per worker and modality")
    args = parser.parse_args()
    # one torch thread in this process, as in DataLoader workers: with more, torch's thread
    # pool makes small tensor operations slow on a busy CPU, for both paths alike
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            root = Path(scratch) / "synthetic"
            generate_benchmark(root, SyntheticConfig(videos=24))
        manifest = json.loads((root / "benchmark.json").read_text())
        bound = manifest["modalities"]["flow"]["bound_px"]
        clips = choose_clips(datamodule(root, 0, args.batch_size, 0), args.clips, args.seed)
        pyav = run_pyav(root, clips, bound)
        rates = {
            (workers, cache): run_datamodule(
                datamodule(root, workers, args.batch_size, cache), clips, 2 if cache else 1
            )
            for cache in (0, args.cache_mb)
            for workers in (0, 2)
        }
    print(f"{len(clips)} clips of {FRAMES} frames, RGB + flow at {SIZE}x{SIZE}, from {root}")
    print(f"  straightforward PyAV, 1 process:            {pyav:7.1f} clips/s")
    for (workers, cache), passes in rates.items():
        for number, rate in enumerate(passes, start=1):
            setting = f"cache_mb={cache}, pass {number}" if cache else "no cache"
            print(
                f"  datamodule, {workers} workers, {setting:<20} {rate:7.1f} clips/s "
                f"({rate / pyav:.1f}x PyAV)"
            )


if __name__ == "__main__":
    main()
