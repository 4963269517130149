"""Test-only callbacks that CLI subprocesses load by class path (`--trainer.callbacks+=...`)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from lightning_modules.runs.preemption import Preemption


class StepMarker(Callback):
    """Print `crossdistill-test: epoch E step S` to stderr after every training step, so that a
    test can wait for a point in the run (here: to send a signal mid-epoch).

    With `hold_at`, the run waits after printing step `hold_at` until a preemption signal has
    arrived (at most `hold_s` seconds), so that the signal lands at that step boundary and not at
    whichever step a busy machine has reached by then.
    """

    def __init__(self, hold_at: int | None = None, hold_s: float = 120.0) -> None:
        self.hold_at, self.hold_s = hold_at, hold_s

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        print(
            f"crossdistill-test: epoch {trainer.current_epoch} step {trainer.global_step}",
            file=sys.stderr,
            flush=True,
        )
        if trainer.global_step == self.hold_at:
            preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))
            deadline = time.monotonic() + self.hold_s
            while preemption.received is None and time.monotonic() < deadline:
                time.sleep(0.05)


class FailOnRank(Callback):
    """Raise `RuntimeError` on global rank `rank` at training step `step`."""

    def __init__(self, rank: int = 1, step: int = 1) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            raise RuntimeError(f"injected failure on rank {self.rank} (pid {os.getpid()})")


class PoisonBatch(Callback):
    """Set the inputs of the first sample of the batch at training step `step` to NaN (as a
    broken feature file would, past the loaders' checks) and print which window it was."""

    def __init__(self, step: int = 1) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != self.step:
            return
        for tensor in batch["inputs"].values():
            if tensor.is_floating_point():
                tensor[0] = float("nan")
        meta = batch["meta"]
        window = f"{meta['video_id'][0]} [{float(meta['t0'][0]):g}, {float(meta['t1'][0]):g}) s"
        print(f"crossdistill-test: poisoned {window}", file=sys.stderr, flush=True)
