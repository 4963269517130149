"""TeacherModule: a model trained on ground truth.

The same module trains a modality teacher (flow, pose, boxes), the RGB-only baseline and the
multi-stream references of the paper tables (a fusion model is just another `model`); the
DistillModule later loads its checkpoints and freezes them.
"""

from __future__ import annotations

import math
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
):  # fmt: skip
    """Learning-rate factor per optimiser step: linear warm-up, then cosine or linear decay."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress

    return factor


class TeacherModule(pl.LightningModule):
    """Train `model` on the task's ground truth, with AdamW, warm-up and decay.

    Args:
        model: any module called as `model(batch["inputs"], batch["mask"]) -> ModelOutput`.
        task: the task family; it owns the loss, the decoding and the metrics.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length, in epochs (fractions allowed).
        schedule: decay after warm-up, over the whole run.
        predictions_dir: where `test` writes predictions files (default: the run's log dir).
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = model
        self.task = task
        self.task_name = TASK_NAMES[type(task)]
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

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        output = self(batch)
        losses = self.task.loss(output, batch)
        size = len(batch["meta"]["video_id"])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=size, prog_bar=True)
        return losses["loss"]

    def _evaluate(self, split: str, batch: dict[str, Any]) -> ModelOutput:
        output = self(batch)
        self._check_classes(output)
        losses = self.task.loss(output, batch)
        size = len(batch["meta"]["video_id"])
        self.log(f"{split}/loss", losses["loss"], batch_size=size, sync_dist=True)
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
            gathered: list[list[dict]] = [None] * torch.distributed.get_world_size()  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        self._test_rows = []
        if self.trainer.is_global_zero:
            folder = Path(
                self.hparams.predictions_dir or Path(self.trainer.log_dir or ".") / "predictions"
            )
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

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = max(1, round(self.hparams.warmup_epochs * per_epoch))
        factor = warmup_then_decay(total, warmup, self.hparams.schedule)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
