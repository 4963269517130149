"""`NonFiniteGuard`: catch a NaN/Inf loss or gradient at the step where it appears.

Checked after the backward pass and before the optimiser step (and before gradient clipping,
which would spread a NaN over every parameter). The report names the global step, the training
loss terms that are not finite (`pl_module.loss_terms`: the task loss and, for a DistillModule,
each distillation objective by name), the first parameters with non-finite gradients, and the
videos and windows of the batch (`video_id [t0, t1) s`; with gradient accumulation, of every
batch since the last optimiser step). Then, by `action`:

- `stop` (default): raise `NonFiniteError` with the report; the run ends (exit status 1).
- `skip`: print the report, drop the gradients (the optimiser step leaves every parameter and
  its optimiser state unchanged), put back the buffers the bad forward pass changed (batch-norm
  statistics; they are copied before every step in this mode) and go on; the count is logged
  as `train/skipped_steps`.

Under DDP the decision is taken over all ranks, so every rank stops or skips the same step.
With fp16 mixed precision (a gradient scaler), non-finite gradients are the scaler's business
(it skips the step and lowers the scale), so only the loss terms are checked.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

Action = Literal["stop", "skip"]
MAX_LISTED = 5


class NonFiniteError(RuntimeError):
    """A training loss or gradient became NaN or infinite."""


class NonFiniteGuard(Callback):
    """Stop the run, or skip the step, when the loss or a gradient is not finite."""

    def __init__(self, action: Action = "stop") -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"nan_guard action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.skipped = 0
        self._metas: list[Any] = []
        self._buffers: dict[str, torch.Tensor] = {}

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.action == "skip" and not self._metas:  # first batch of an optimiser step
            self._buffers = {k: v.detach().clone() for k, v in pl_module.named_buffers()}
        # kept as is and described only when a step goes bad (no device syncs per step)
        self._metas.append(batch.get("meta") if isinstance(batch, dict) else None)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        metas, self._metas = self._metas, []
        terms: dict[str, torch.Tensor] = getattr(pl_module, "loss_terms", {})
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        gradients = [] if scaler is not None else [p.grad for p in pl_module.parameters()]
        bad = not all_finite([*terms.values(), *(g for g in gradients if g is not None)])
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        bad_terms = {k: float(v) for k, v in terms.items() if not all_finite([v])}
        bad_gradients = [] if scaler is not None else non_finite_gradients(pl_module)
        windows = [window for meta in metas for window in describe_windows(meta)]
        report = self._report(trainer, bad_terms, bad_gradients, windows)
        if self.action == "stop":
            raise NonFiniteError(report)
        print(f"crossdistill: {report}; step skipped", file=sys.stderr, flush=True)
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None
        with torch.no_grad():
            for name, buffer in pl_module.named_buffers():
                if name in self._buffers:
                    buffer.copy_(self._buffers[name])
        self.skipped += 1
        pl_module.log("train/skipped_steps", float(self.skipped), rank_zero_only=True)

    def _report(
        self,
        trainer: pl.Trainer,
        terms: dict[str, float],
        gradients: list[str],
        windows: list[str],
    ) -> str:
        parts = [f"non-finite training loss or gradient at global step {trainer.global_step}"]
        if trainer.world_size > 1:
            parts[0] += f" (rank {trainer.global_rank})"
        if terms:
            parts.append("loss terms: " + ", ".join(f"{k}={v}" for k, v in terms.items()))
        elif trainer.world_size > 1 and not gradients:
            parts.append("loss terms: all finite on this rank (another rank's batch went bad)")
        else:
            parts.append("loss terms: all finite")
        if gradients:
            parts.append("gradients: " + _short(gradients))
        parts.append("batch windows: " + _short(windows))
        fix = (
            "Fix: check these videos with `crossdistill data-check`, lower the learning rate or "
            "set gradient clipping; `--nan_guard skip` skips such steps, `--nan_guard off` "
            "turns the check off"
        )
        return "; ".join(parts) + ". " + fix


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite (one device sync in all)."""
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def non_finite_gradients(module: torch.nn.Module) -> list[str]:
    """Names of the parameters whose gradient holds a NaN or an infinity."""
    return [
        name
        for name, parameter in module.named_parameters()
        if parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all())
    ]


def describe_windows(meta: dict[str, Any] | None) -> list[str]:
    """`video_id [t0, t1) s` of each sample of a batch, from its `meta`."""
    if not meta or "video_id" not in meta:
        return []
    t0 = meta.get("t0", [math.nan] * len(meta["video_id"]))
    t1 = meta.get("t1", [math.nan] * len(meta["video_id"]))
    return [
        f"{video} [{float(start):g}, {float(end):g}) s"
        for video, start, end in zip(meta["video_id"], t0, t1, strict=True)
    ]


def _short(items: list[str]) -> str:
    listed = ", ".join(items[:MAX_LISTED])
    return listed + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")
