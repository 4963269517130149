"""TeacherModule: a model trained on ground truth.

The same module trains a modality teacher (flow, pose, boxes), the RGB-only baseline and the
multi-stream references of the paper tables (a fusion model is just another `model`); the
DistillModule later loads its checkpoints and freezes them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from lightning_modules.task_module import Optimisation, TaskModule
from lightning_modules.tasks import Task


class TeacherModule(TaskModule):
    """Train `model` on the task's ground truth, with AdamW (or `optimizer`), warm-up and decay.

    Args:
        model: any module called as `model(batch["inputs"], batch["mask"]) -> ModelOutput`.
        task: the task family; it owns the loss, the decoding and the metrics.
        lr: peak learning rate (of every parameter group, times its multiplier).
        weight_decay: weight decay of every parameter group.
        warmup_epochs: linear warm-up length, in epochs (fractions allowed).
        schedule: decay after warm-up, over the whole run.
        predictions_dir: where `test` writes predictions files (default: the run's log dir).
        optimizer: the optimiser class and its other arguments, e.g. `{class_path:
            torch.optim.SGD, init_args: {momentum: 0.9}}`; `lr` and `weight_decay` come from
            the two arguments above, per parameter group.
        backbone_lr_multiplier: the learning rate of pretrained backbones (a
            `TorchvisionVideoEncoder`'s network) is `lr` times this, e.g. 0.1 to fine-tune
            gently; the rest of the model trains at `lr`.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        schedule: Literal["cosine", "linear"] = "cosine",
        predictions_dir: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        backbone_lr_multiplier: float = 1.0,
    ) -> None:
        settings = (lr, weight_decay, warmup_epochs, schedule, optimizer, backbone_lr_multiplier)
        super().__init__(task, Optimisation(*settings), predictions_dir)
        self.save_init_args()
        self.model = model
        self.held_out_digest: str | None = None
        """Fingerprint of the training videos this model was trained without (`held_out_fraction`
        of the data), read back from its checkpoint; None when it trained on all of them."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # a student fitting held-out teacher weights checks that its teachers never saw them
        datamodule = self.trainer.datamodule
        checkpoint["held_out_digest"] = getattr(datamodule, "held_out_digest", None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.held_out_digest = checkpoint.get("held_out_digest")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        output = self(batch)
        losses = self.task.loss(output, batch)
        self.log_loss_terms(losses, batch)
        return losses["loss"]
