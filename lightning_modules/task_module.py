"""What teacher and student training share: evaluation with the task's metrics, test
predictions in `crossdistill evaluate`'s formats, and AdamW with warm-up and decay.

`TeacherModule` and `DistillModule` differ only in the model they train (`self.model`) and in
the training loss; everything measured is measured the same way for both.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_modules.models.outputs import ModelOutput
from lightning_modules.predictions import window_rows, write_predictions
from lightning_modules.tasks import ClipTask, DenseTask, SegmentTask, Task

TASK_NAMES = {DenseTask: "dense", SegmentTask: "segments", ClipTask: "clips"}


def warmup_then_decay(
    total_steps: int, warmup_steps: int, schedule: Literal["cosine", "linear"]
) -> Callable[[int], float]:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine or linear decay."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress

    return factor


class TaskModule(pl.LightningModule):
    """Base of the trainable modules: `self.model` on `self.task`, evaluated by the task."""

    model: nn.Module

    def __init__(
        self,
        task: Task,
        lr: float,
        weight_decay: float,
        warmup_epochs: float,
        schedule: Literal["cosine", "linear"],
        predictions_dir: str | None,
    ) -> None:
        super().__init__()
        self.task = task
        self.task_name = TASK_NAMES[type(task)]
        self.optimiser_settings = (lr, weight_decay, warmup_epochs, schedule)
        self.predictions_dir = predictions_dir
        self.metrics = nn.ModuleDict()
        self._test_rows: list[dict] = []

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        return self.model(batch["inputs"], batch["mask"])

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        self.num_classes = datamodule.num_classes
        self.class_names = datamodule.class_names
        for split in ("val", "test"):
            self.metrics[split] = self.task.metrics(self.num_classes)

    def save_init_args(self) -> None:
        """Record the subclass's init args, so `load_from_checkpoint` rebuilds the module.

        The CLI passes class paths, which Lightning stores and re-instantiates; a module built
        by hand passes objects, which Lightning warns about and the checkpoint keeps anyway.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attribute '.*' is an instance of")
            self.save_hyperparameters(frame=inspect.currentframe().f_back)

    @staticmethod
    def batch_size(batch: dict[str, Any]) -> int:
        return len(batch["meta"]["video_id"])

    def _evaluate(self, split: str, batch: dict[str, Any]) -> ModelOutput:
        output = self(batch)
        self._check_classes(output)
        losses = self.task.loss(output, batch)
        self.log(f"{split}/loss", losses["loss"], batch_size=self.batch_size(batch), sync_dist=True)
        self.task.update_metrics(self.metrics[split], output, batch)
        return output

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self._evaluate("test", batch)
        predictions = self.task.predict(output, batch)
        self._test_rows += window_rows(self.task_name, predictions, batch)

    def _log_metrics(self, split: str) -> dict[str, float]:
        values = self.task.compute_metrics(self.metrics[split])
        for metric in self.metrics[split].values():
            metric.reset()
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, rank_zero_only=False)
        return values

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
        rows = self._test_rows
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[list[dict]] = [[] for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        self._test_rows = []
        if self.trainer.is_global_zero:
            default = Path(self.trainer.log_dir or ".") / "predictions"
            folder = Path(self.predictions_dir) if self.predictions_dir else default
            path = write_predictions(self.task_name, rows, self.class_names, folder)
            print(f"predictions written to {path}")

    def _check_classes(self, output: ModelOutput) -> None:
        logits = output.logits if isinstance(output.logits, torch.Tensor) else None
        expected = self.num_classes
        if logits is not None and isinstance(expected, int) and logits.shape[1] != expected:
            raise ValueError(
                f"the model predicts {logits.shape[1]} classes but the data has {expected}: "
                f"set the head's num_classes to {expected}"
            )

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        lr, weight_decay, warmup_epochs, schedule = self.optimiser_settings
        optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=lr, weight_decay=weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = max(1, round(warmup_epochs * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_then_decay(total, warmup, schedule)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
