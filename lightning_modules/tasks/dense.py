"""Dense per-step multi-label detection (Charades, TSU, PKU-MMD): masked BCE per stage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_modules.metrics.streaming import FrameMAP
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.tasks.base import Task, sample_ids
from lightning_modules.tasks.losses import masked_bce


class DenseTask(Task):
    """Per-step sigmoid classification against `batch["targets"]["frames"]` `(B, T, K)`.

    The loss is the masked BCE of every stage in `extras["stage_logits"]`, summed over stages
    as MS-TCN does (one stage for PDAN). Predictions are per-step probabilities `(B, K, T)`,
    what `FrameMAP.update(scores, targets, mask, ids)` takes with `targets(batch)`.

    Args:
        reduction: `pdan` (default) sums the BCE over classes and averages it over valid steps,
            as the authors' PDAN training does, so that a distillation weight means what it
            means there; `mean` also averages over classes (K times smaller: with lambda = 1
            every KD term then weighs K times more against the task loss, 157x on Charades).
    """

    main_metric = "frame_mAP"
    kind = "dense"

    def __init__(self, reduction: Literal["pdan", "mean"] = "pdan") -> None:
        if reduction not in ("pdan", "mean"):
            raise ValueError(f"reduction must be 'pdan' or 'mean', got {reduction!r}")
        self.reduction = reduction

    def loss(self, output: ModelOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        targets = self.targets(batch)
        stages = [
            masked_bce(logits, targets, output.mask, sum_classes=self.reduction == "pdan")
            for logits in output.extras["stage_logits"]
        ]
        return {"loss": torch.stack(stages).sum()}

    def predict(self, output: ModelOutput, batch: Mapping[str, Any]) -> Tensor:
        return torch.sigmoid(output.logits.float())

    @staticmethod
    def targets(batch: Mapping[str, Any]) -> Tensor:
        """The multi-hot targets as `(B, K, T)`, the logits' layout."""
        return batch["targets"]["frames"].transpose(1, 2)

    def metrics(self, num_classes: int) -> nn.ModuleDict:
        return nn.ModuleDict({"frames": FrameMAP(num_classes)})

    def update_metrics(
        self, metrics: nn.ModuleDict, output: ModelOutput, batch: Mapping[str, Any]
    ) -> None:
        scores = self.predict(output, batch)
        metrics["frames"].update(scores, self.targets(batch), output.mask, sample_ids(batch))
