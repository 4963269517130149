"""Training steps/s on the CPU with 1 and 2 torch threads, alone and beside another job, with
OpenMP's idle threads spinning (`OMP_WAIT_POLICY=ACTIVE`, what libgomp does first by default)
or sleeping (`PASSIVE`).

    .venv/bin/python experiments/benchmarks/threads.py [--seconds 12] [--size 32]

Each measurement is a fresh process (the policy is read once, when OpenMP starts) training the
dense RGB student (`teacher/dense_rgb.yaml` on `data/synthetic.yaml`, frames at `--size`) on one
batch for `--seconds`. "Beside another job": a second process trains the same model with one
thread meanwhile (a run of `reproduce`'s other lane, a test suite). Prints steps/s and the
ratio to one thread in the same setting, and the machine's load. `--tiny` checks the script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SETTINGS = [(1, "PASSIVE"), (2, "ACTIVE"), (2, "PASSIVE")]


def worker(root: Path, size: int, threads: int, seconds: float) -> None:
    """Train on one fixed batch for `seconds`; print steps/s as JSON (the policy is already
    in this process's environment)."""
    import torch

    sys.path.insert(0, str(HERE.parent))
    from gpu import build

    torch.set_num_threads(threads)
    module, datamodule = build("data/synthetic.yaml", "teacher/dense_rgb.yaml", root, size, 0, 4)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()

    def step() -> None:
        loss = module.task.loss(module(batch), batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    print(json.dumps({"steps_per_second": steps / (time.perf_counter() - start)}), flush=True)


def launch(root: Path, size: int, threads: int, policy: str, seconds: float) -> subprocess.Popen:
    environment = {**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, str(HERE), "--worker", "--root", str(root), "--size", str(size)]
    command += ["--threads", str(threads), "--seconds", str(seconds)]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)


def measure(
    root: Path, size: int, threads: int, policy: str, seconds: float, beside: bool
) -> float:
    other = launch(root, size, 1, "PASSIVE", 10 * seconds + 60) if beside else None
    try:
        if other is not None:
            time.sleep(min(8.0, seconds))  # the other job past its start-up, training
        measured = launch(root, size, threads, policy, seconds)
        output, _ = measured.communicate()
        if measured.returncode != 0:
            raise SystemExit(f"the measured process failed ({measured.returncode})")
        return json.loads(output.strip().splitlines()[-1])["steps_per_second"]
    finally:
        if other is not None:
            other.kill()
            other.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("outputs/data/synthetic-threads"))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help="a check of the script (tests)")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.root, args.size, args.threads, args.seconds)
        return 0
    from datamodules.synthetic.generator import SyntheticConfig, generate_benchmark, is_complete

    if args.tiny:
        args.seconds = 0.5
    config = SyntheticConfig(videos=6 if args.tiny else 12, min_duration=8.0, max_duration=12.0)
    if not is_complete(args.root, config):
        print(f"generating {config.videos} synthetic videos under {args.root} ...", flush=True)
        generate_benchmark(args.root, config)
    load_before = os.getloadavg()[0]
    for beside in (False,) if args.tiny else (False, True):
        rates = {
            (threads, policy): measure(args.root, args.size, threads, policy, args.seconds, beside)
            for threads, policy in SETTINGS
        }
        one = rates[(1, "PASSIVE")]
        where = "beside another job" if beside else "alone"
        print(
            f"dense RGB student at {args.size}x{args.size}, {where}: "
            + ", ".join(
                f"{threads} thread(s) {policy} {rate:.2f} steps/s ({rate / one:.2f}x)"
                for (threads, policy), rate in rates.items()
            ),
            flush=True,
        )
    print(f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, "
          f"on {os.cpu_count()} cores")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
