"""Clips per second of `MultimodalDataModule` against a straightforward PyAV decode, in one run.

Every path produces the same clips: 16 consecutive frames of RGB and flow at 64x64 from the
synthetic benchmark, as float tensors `(3, 16, 64, 64)` in [0, 1] and `(2, 16, 64, 64)` in
pixels / bound, for the same list of randomly placed clips. The paths:

- straightforward PyAV: opens both mp4s per clip and decodes from the first frame up to the
  clip's last, as a first script would (one process);
- the datamodule decoding every clip (cached decord readers per worker, batch frame access);
- the datamodule reading a frame store (`frame_store:`), each on its FIRST pass over the clips:
  with the store built beforehand by `crossdistill frame-store` (its build time is printed
  apart), and with an empty store that the pass builds on first use (each video decoded whole
  when a clip first reads it).

The datamodule runs without augmentation, so that every path does the same work, with 0 and 2
workers; worker start-up is included. Every store starts empty in a temporary folder (never
beside `--root`, which may be read-only). The store built ahead was just written, so its files
are in the page cache, as they are after the command on a machine with memory to spare; no pass
is repeated, so no figure relies on a second epoch. The load average is printed before and
after: on a shared machine the ratios, measured in one run, mean more than the rates.

    .venv/bin/python experiments/benchmarks/loader.py [--root data/synthetic] [--clips 400]

Without `--root`, a 24-video benchmark is generated into a temporary folder. `--tiny` (what the
test suite runs) takes a few clips with 0 workers, to check the script, not to measure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import yaml

from datamodules.datamodule import MultimodalDataModule
from datamodules.grid import TimeGrid
from datamodules.optical_flow import dequantize_flow
from datamodules.sampling import Window
from datamodules.sources import FlowSource, VideoSource
from datamodules.synthetic import SyntheticConfig, generate_benchmark

FRAMES = 16
SIZE = 64
WINDOW = {"window_seconds": 1.0, "window_steps": FRAMES, "augment": None}


class FixedClips:
    """A window sampler over a given list of windows (the clips every path decodes)."""

    random = False

    def __init__(self, clips: list[Window]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def windows(self, index: int, rng: np.random.Generator | None) -> list[Window]:
        return [self.clips[index]]


def datamodule(
    root: Path, workers: int, batch_size: int, store: Path | None = None
) -> MultimodalDataModule:
    option = str(store) if store is not None else False
    dm = MultimodalDataModule(
        root=root,
        modalities={
            "rgb": VideoSource(size=SIZE, frame_store=option),
            "flow": FlowSource(size=SIZE, frame_store=option),
        },
        batch_size=batch_size,
        num_workers=workers,
        **WINDOW,
    )
    dm.setup("fit")
    return dm


def build_store(root: Path, store: Path) -> float:
    """Seconds `crossdistill frame-store` takes to fill `store` for every video of the
    benchmark (the same sources as `datamodule`); its progress lines are not printed."""
    from lightning_modules.commands import main as crossdistill

    source = {"size": SIZE, "frame_store": str(store)}
    config = {
        "data": {
            "class_path": "datamodules.datamodule.MultimodalDataModule",
            "init_args": {
                "root": str(root),
                "modalities": {
                    "rgb": {"class_path": "datamodules.sources.VideoSource", "init_args": source},
                    "flow": {"class_path": "datamodules.sources.FlowSource", "init_args": source},
                },
                **WINDOW,
            },
        }
    }
    path = store.parent / f"{store.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        status = crossdistill(["frame-store", "--config", str(path)])
    if status != 0:
        raise SystemExit(f"crossdistill frame-store failed:\n{printed.getvalue()}")
    return time.perf_counter() - start


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


def first_pass(dm: MultimodalDataModule, clips: list[Window]) -> float:
    """Clips per second of one pass through the datamodule's training DataLoader."""
    dm.datasets["train"].sampler = FixedClips(clips)
    start = time.perf_counter()
    seen = sum(batch["inputs"]["rgb"].shape[0] for batch in dm.train_dataloader())
    assert seen == len(clips)
    return seen / (time.perf_counter() - start)


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


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="synthetic benchmark (default: generate one)")
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--tiny", action="store_true", help="a check of the script (tests)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.clips, args.batch_size, args.workers = 8, 4, [0]
    # one torch thread in this process, as in DataLoader workers: with more, torch's thread
    # pool makes small tensor operations slow on a busy CPU, for every path alike
    torch.set_num_threads(1)
    print(f"load average (1, 5, 15 min) at the start: {load()} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            root = Path(scratch) / "synthetic"
            videos = 3 if args.tiny else 24
            generate_benchmark(root, SyntheticConfig(videos=videos, min_duration=8.0))
        manifest = json.loads((root / "benchmark.json").read_text())
        bound = manifest["modalities"]["flow"]["bound_px"]
        clips = choose_clips(datamodule(root, 0, args.batch_size), args.clips, args.seed)
        print(f"{len(clips)} clips of {FRAMES} frames, RGB + flow at {SIZE}x{SIZE}, from {root}")
        pyav = run_pyav(root, clips, bound)
        rates: dict[str, float] = {}
        for workers in args.workers:
            dm = datamodule(root, workers, args.batch_size)
            rates[f"datamodule, {workers} workers, decoding"] = first_pass(dm, clips)
        built = Path(scratch) / "store_built_ahead"
        build_s = build_store(root, built)
        for workers in args.workers:
            dm = datamodule(root, workers, args.batch_size, built)
            rates[f"frame store built ahead, {workers} workers, 1st pass"] = first_pass(dm, clips)
        for workers in args.workers:
            fresh = Path(scratch) / f"store_first_use_{workers}"
            dm = datamodule(root, workers, args.batch_size, fresh)
            rates[f"frame store built on first use, {workers} workers, 1st pass"] = first_pass(
                dm, clips
            )
        width = max(len(name) for name in rates) + 1
        print(f"  {'straightforward PyAV, 1 process:':<{width}} {pyav:8.1f} clips/s")
        for name, rate in rates.items():
            print(f"  {name + ':':<{width}} {rate:8.1f} clips/s ({rate / pyav:.1f}x PyAV)")
        videos = len(list((root / "videos").glob("*.mp4")))
        print(f"  crossdistill frame-store build, {videos} videos x (RGB, flow): {build_s:.1f} s")
    print(f"load average (1, 5, 15 min) at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
