"""Preemption: on SIGTERM/SIGUSR1 save `last.ckpt` at the step boundary, stop, and resume exactly.

On a signal the run stops at the next training step boundary (the same step on every rank) after
writing `checkpoints/last.ckpt` there with `trainer.save_checkpoint` (every rank takes part,
global rank 0 writes, atomically); the exit status is 75. `fit --ckpt_path last` then goes on
from that step, and the final weights and metrics equal those of an uninterrupted run with the
same seed. What makes a step-boundary checkpoint exact:

- the data: the training order and each sample's randomness are functions of (seed, epoch,
  sample), not of a generator's position (`datamodules.sampling.TrainSampler` draws epoch `e`'s
  permutation from `seed + e`; the dataset seeds each sample's window and augmentation from
  (seed, epoch, index)), so they are the same in the main process and in workers;
- the position: the training loader is stateful (`datamodules.datamodule.ResumableLoader`);
  Lightning stores its epoch and the samples taken with the loop counters and, on resume, hands
  them back before the first batch, so the pass goes on after the batches already trained on;
- the rest of the random state: the loaders draw from their own generators, so the global ones
  (torch, CUDA, numpy, Python) serve the model (dropout) only; this callback adds them to every
  checkpoint and puts them back on resume.

The stop waits for a step that ends an optimizer step (gradient accumulation), is not the last
of an epoch (the end of an epoch is a step away, with its validation and `last.ckpt` written
there by `RunCheckpoint`, so the run goes on into the next epoch and stops after its first
step) and is not followed by a mid-epoch validation (`val_check_interval`: Lightning resumes a
checkpoint of that step past the validation, which would be lost; it runs, and the run stops
one step later).
A run killed before its first step boundary has no `last.ckpt`: `fit --ckpt_path last` then
starts it again from the beginning, in the same folder (same seed, same result).

Signals: this callback installs its handlers before Lightning installs its own, so Lightning's
SLURM handler (an `hpc_ckpt_N.ckpt` written from inside the signal handler, then `scontrol
requeue`) stays out; it takes SIGTERM back when training starts, so Lightning's SIGTERM handler
(which stops after the step's validation, without a checkpoint) stays out as well. A rank that
got no signal learns of it at the next step. At the step boundary, after the checkpoint, global
rank 0 requeues the job with `scontrol requeue` when the signal was SIGUSR1 and SLURM is
detected. SIGTERM (`scancel`, or SLURM's kill after a requeue) stops the run the same way
without requeueing.
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
    """Keep the random state in checkpoints; on `signals`, write `last_path` at the next step
    boundary and stop (see the module docstring).

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
        # checkpoints are written at step boundaries and epoch ends: the next draw from here is
        # the next training step's (the loaders have their own generators; Lightning's sanity
        # check, which runs on some resumes, isolates the random state)
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before the first training step
        if state_dict.get("rng") is not None:
            set_rng_states(state_dict["rng"])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = None
        self._install_handlers()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has put its SIGTERM handler over ours by now: take the signals back, so that
        # only this callback stops the run (Lightning's would stop it after the step's
        # validation, before the epoch's checkpoint, and write none)
        self._install_handlers()
        # Lightning hands a checkpoint's loader state to the training loader when it builds the
        # loader after restoring the loops; `trainer.estimated_stepping_batches` (our modules'
        # `configure_optimizers`) builds it before, and the state would be dropped. The loader
        # reads it at its first batch, which is still to come.
        trainer.fit_loop._load_combined_loader_states()

    # signals

    def _install_handlers(self) -> None:
        """Handle `signals`; the handlers found the first time are chained and put back at
        teardown."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous.setdefault(signum, signal.getsignal(signum))
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
        done = batch_idx + 1
        if not stop or done >= trainer.num_training_batches:
            return  # at an epoch's last step, its validation and last.ckpt come first
        if done % trainer.accumulate_grad_batches:
            return  # accumulated gradients are not checkpointed: wait for the optimizer step
        if _validation_due(trainer):
            return  # a resume would skip this step's validation: let it run, stop a step later
        trainer.save_checkpoint(self.last_path, weights_only=False)
        name = self.received.name if self.received is not None else "a signal on another rank"
        if self.requeue and self.received == signal.SIGUSR1 and trainer.is_global_zero:
            _requeue_slurm_job()
        raise Preempted(
            f"stopped by {name} at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {done}), saved in {self.last_path}; resume with "
            f"`crossdistill fit --config {self.last_path.parent.parent / 'config.yaml'} "
            "--ckpt_path last`"
        )


def _validation_due(trainer: pl.Trainer) -> bool:
    """Whether a validation runs after the training step just finished (mid-epoch, with
    `val_check_interval`): Lightning resumes a checkpoint of that step past its validation."""
    loop = trainer.fit_loop
    if not trainer.enable_validation:
        return False
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))


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
