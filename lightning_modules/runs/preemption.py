"""Preemption: stop cleanly on SIGTERM/SIGUSR1 and resume to exactly the uninterrupted result.

Resume points are epoch boundaries. The run's `checkpoints/last.ckpt` is rewritten at the end of
every epoch (by `RunCheckpoint`), so it holds the state at the start of the epoch in progress,
including the global random state (torch, CUDA, numpy, Python) that this callback adds to every
checkpoint and puts back on resume, before the training loader draws its order. On a signal the
run stops at the next training step boundary without writing anything; resuming with
`--ckpt_path last` redoes the interrupted epoch from its start with the same random state, so the
data order, the random windows and dropout are those of the uninterrupted run and the final
weights are equal. A run stopped before its first epoch ended has no `last.ckpt`: `fit
--ckpt_path last` then starts it again from the beginning, in the same folder (same seed, same
result).

Why not resume mid-epoch: Lightning restores the loop counters of a mid-epoch checkpoint but
restarts a plain DataLoader from a fresh pass (it warns "not resumable"), and our training
samples draw their windows from the torch generator in the order they are loaded (in the main
process, or in persistent workers whose generators live only there). No checkpoint taken in the
middle of an epoch can put those streams back, so the work of the interrupted epoch is redone.

SLURM: this callback installs its SIGUSR1 handler before Lightning installs its own, so
Lightning's SLURM handler (an `hpc_ckpt_N.ckpt` written from inside the signal handler, then
`scontrol requeue`) stays out; at the step boundary, global rank 0 requeues the job itself with
`scontrol requeue` when the signal was SIGUSR1 and SLURM is detected. SIGTERM (`scancel`, or
SLURM's kill after a requeue) stops the run the same way without requeueing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Callback

PREEMPTED_EXIT_CODE = 75
"""Exit status of a run stopped by a preemption signal (EX_TEMPFAIL: try again later)."""

DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


class Preempted(Exception):
    """Raised at a training step boundary after a preemption signal."""


class Preemption(Callback):
    """Keep the random state in checkpoints and stop at the next step boundary on `signals` (see
    the module docstring).

    Args:
        last_path: the run's `checkpoints/last.ckpt`.
        signals: signal names that stop the run.
        requeue: under SLURM, requeue the job after SIGUSR1 (as Lightning's auto-requeue does).
    """

    def __init__(
        self,
        last_path: Path,
        signals: tuple[str, ...] = DEFAULT_SIGNALS,
        requeue: bool = True,
    ) -> None:
        self.last_path = Path(last_path)
        self.signals = [signal.Signals[name] for name in signals]
        self.requeue = requeue
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def state_key(self) -> str:
        return type(self).__name__

    # the random state travels with every checkpoint

    def state_dict(self) -> dict[str, Any]:
        # taken at the end of an epoch: nothing draws from here to the next epoch's loader
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before it builds the training loader (the sanity check,
        # which would draw, is skipped on resume)
        if state_dict.get("rng") is not None:
            set_rng_states(state_dict["rng"])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = None
        self._install_handlers()

    # signals

    def _install_handlers(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)
        print(
            f"crossdistill: received {self.received.name}; stopping at the next training step "
            f"(resume with --ckpt_path last from {self.last_path})",
            file=sys.stderr,
            flush=True,
        )
        previous = self._previous.get(self.received)
        if callable(previous):
            previous(signum, frame)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step, whichever got the signal
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        name = self.received.name if self.received is not None else "a signal on another rank"
        if self.requeue and self.received == signal.SIGUSR1 and trainer.is_global_zero:
            _requeue_slurm_job()
        raise Preempted(
            f"stopped by {name} at global step {trainer.global_step}; resume from the start of "
            f"epoch {trainer.current_epoch} with `crossdistill fit --config "
            f"{self.last_path.parent.parent / 'config.yaml'} --ckpt_path last`"
        )


def rng_states() -> dict[str, Any]:
    """The global random states of torch (CPU and CUDA), numpy and Python, as tensors and plain
    values (loadable with `torch.load(weights_only=True)`)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global)
    version, state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": [version, list(state), gauss_next],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    numpy_state = (name, keys.numpy().astype(np.uint32), position, has_gauss, gauss)
    np.random.set_state(numpy_state)  # noqa: NPY002 (the global state seed_everything sets)
    version, state, gauss_next = states["python"]
    random.setstate((version, tuple(state), gauss_next))


def _requeue_slurm_job() -> None:
    """`scontrol requeue` this SLURM job (array task), as Lightning's SLURM handler does."""
    if not SLURMEnvironment.detect():
        return
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = (
        f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        if array_job
        else os.environ["SLURM_JOB_ID"]
    )
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    except OSError as err:
        print(f"crossdistill: cannot requeue SLURM job {job}: {err}", file=sys.stderr)
        return
    status = "requeued" if done.returncode == 0 else f"requeue failed ({done.stderr.strip()})"
    print(f"crossdistill: SLURM job {job} {status}", file=sys.stderr)
