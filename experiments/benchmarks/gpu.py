"""Training throughput of the students on a GPU (or the CPU): steps per second in bf16-mixed,
with and without the data loader, and peak memory. One short command for a lent GPU:

    .venv/bin/python experiments/benchmarks/gpu.py [--size 224] [--steps 30] [--tiny]

Each row is a shipped model config on its shipped data config, the networks `crossdistill fit`
trains: the dense RGB student (`teacher/dense_rgb.yaml`: (2+1)D CNN + PDAN on frames and their
differences) and the clip RGB student (`teacher/clips_rgb.yaml`), with frames resized to
`--size`. A step is the forward pass, the task's loss, the backward pass and an AdamW step,
under `torch.autocast(bfloat16)` for `bf16-mixed` (what Lightning's precision plugin does).

- `compute`: steps on one batch kept on the device: the model alone.
- `with loader`: each step takes its batch from the datamodule's training loader (`--workers`
  processes; the frame stores of the data configs are filled first, untimed) and moves it to
  the device; `compute / with loader` near 1 means the model is the bottleneck, well above 1
  that the loader is.

Peak memory is CUDA's peak allocation on a GPU, the process's peak resident size on the CPU. The
data is a synthetic benchmark generated under `--root` when missing (`--videos` videos). Prints
one line per row and the machine's load; `--tiny` (what the test suite runs) uses small frames,
a few steps and a tiny benchmark, to check the script, not to measure.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from pytorch_lightning import LightningDataModule, LightningModule

from datamodules.synthetic.generator import SyntheticConfig, generate_benchmark, is_complete

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ROWS = {
    "dense RGB student": ("data/synthetic.yaml", "teacher/dense_rgb.yaml"),
    "clip RGB student": ("data/synthetic_clips.yaml", "teacher/clips_rgb.yaml"),
}


def build(
    data: str, model: str, root: Path, size: int, workers: int, batch_size: int | None
) -> tuple[LightningModule, LightningDataModule]:
    """The module and datamodule of a config pair, as `fit` would build them."""
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(LightningModule, "model")
    parser.add_subclass_arguments(LightningDataModule, "data")
    flags = [
        "--config", str(CONFIGS / data), "--config", str(CONFIGS / model),
        f"--data.init_args.root={root}", f"--data.init_args.num_workers={workers}",
    ]  # fmt: skip
    parsed = parser.parse_args(flags)
    for name in parsed.data.init_args.load:  # every loaded video modality at --size
        source = parsed.data.init_args.modalities[name]
        if "size" in source.init_args:
            source.init_args.size = size
    if batch_size is not None:
        parsed.data.init_args.batch_size = batch_size
    built = parser.instantiate(parsed)
    return built.model, built.data


def fill_frame_stores(datamodule: LightningDataModule) -> None:
    """Decode the training videos into the frame stores the data config sets (what
    `crossdistill frame-store` does), before any timing: steps read stored frames, as they do
    in training once the store is built."""
    from lightning_modules.commands.frame_store import fill_stores, stored_sources

    videos = [record.video_id for record in datamodule.reports["train"].usable]
    if failed := fill_stores(stored_sources(datamodule.modalities), videos, lambda _: None):
        raise SystemExit("\n".join(failed))


def to_device(value: Any, device: torch.device) -> Any:
    """Every tensor of a nested batch on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [to_device(item, device) for item in value]
    return value


def steps_per_second(
    module: LightningModule, batches: Callable[[], Iterator[dict]], steps: int, bf16: bool
) -> float:
    """Training steps per second over `steps` steps after two warm-up steps."""
    device = next(module.parameters()).device
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()
    source = batches()

    def step() -> None:
        batch = to_device(next(source), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = module.task.loss(module(batch), batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def endless(loader: Any) -> Iterator[dict]:
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("bf16-mixed", "32"), default="bf16-mixed")
    parser.add_argument("--size", type=int, default=224, help="frame side, pixels")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--root", type=Path, default=Path("outputs/data/synthetic-gpu"))
    parser.add_argument("--tiny", action="store_true", help="a check of the script (tests)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.steps, args.batch_size, args.workers = 32, 2, 2, 0
    config = SyntheticConfig(videos=args.videos, min_duration=8.0, max_duration=12.0)
    if args.tiny:  # the test suite's tiny benchmark
        config = SyntheticConfig(videos=6, min_duration=8.0, max_duration=12.0)
    if not is_complete(args.root, config):
        print(f"generating {config.videos} synthetic videos under {args.root} ...", flush=True)
        generate_benchmark(args.root, config)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}, {args.precision}, frames {args.size}x{args.size}, {args.steps} steps, "
        f"{args.workers} loader workers, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    bf16 = args.precision == "bf16-mixed"
    for row, (data, model) in ROWS.items():
        module, datamodule = build(data, model, args.root, args.size, args.workers, args.batch_size)
        datamodule.setup("fit")
        fill_frame_stores(datamodule)
        module.to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        loader = datamodule.train_dataloader()
        fixed = to_device(next(iter(loader)), device)  # moved once: the model alone
        compute = steps_per_second(module, lambda b=fixed: iter(lambda: b, None), args.steps, bf16)
        loaded = steps_per_second(module, lambda d=loader: endless(d), args.steps, bf16)
        print(
            f"{row:18s} batch {len(fixed['meta']['video_id']):3d}: compute {compute:7.2f} "
            f"steps/s, with loader {loaded:7.2f} steps/s (compute / with loader "
            f"{compute / loaded:.2f}x), peak memory {peak_memory_mb(device):8.0f} MiB",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
