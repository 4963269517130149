"""What teacher and student training share: evaluation with the task's metrics, test
predictions in `crossdistill evaluate`'s formats, and the optimiser (AdamW by default) on
parameter groups, with warm-up and decay.

`TeacherModule` and `DistillModule` differ only in the model they train (`self.model`) and in
the training loss; everything measured is measured the same way for both.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from datamodules.errors import ConfigError
from lightning_modules.models.encoder import ModalityEncoder, input_modalities
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.tasks import Task


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


@dataclass(frozen=True)
class Optimisation:
    """How a TaskModule trains its model (the modules' arguments of the same names).

    `optimizer` builds the optimiser from parameter groups, each carrying its own `lr` and
    `weight_decay`, which replace the optimizer's own (the `lr` / `weight_decay` that the
    resolved config shows among its init_args are not used): the parameters of
    pretrained backbones (`ModalityEncoder.backbone_parameters`) at `lr *
    backbone_lr_multiplier`, the rest at `lr`. The factor of `warmup_then_decay` scales every
    group's rate alike, step by step.
    """

    lr: float
    weight_decay: float
    warmup_epochs: float
    schedule: Literal["cosine", "linear"]
    optimizer: OptimizerCallable
    backbone_lr_multiplier: float

    def __post_init__(self) -> None:
        if self.backbone_lr_multiplier < 0:
            raise ConfigError(
                f"backbone_lr_multiplier is {self.backbone_lr_multiplier}; it is >= 0 "
                "(0: its weights stay as loaded; the encoder's `freeze` also keeps its BatchNorm "
                "statistics)"
            )

    def parameter_groups(self, model: nn.Module, trainable: Iterable[nn.Parameter]) -> list[dict]:
        """The trainable parameters in groups: `other` at `lr`, `backbone` (when the model has
        a pretrained backbone) at `lr * backbone_lr_multiplier`; empty groups left out."""
        backbone = {
            id(p)
            for encoder in model.modules()
            if isinstance(encoder, ModalityEncoder)
            for p in encoder.backbone_parameters()
        }
        params = list(trainable)
        groups = [
            ("other", [p for p in params if id(p) not in backbone], 1.0),
            ("backbone", [p for p in params if id(p) in backbone], self.backbone_lr_multiplier),
        ]
        return [
            {"name": name, "params": ps, "lr": self.lr * factor, "weight_decay": self.weight_decay}
            for name, ps, factor in groups
            if ps
        ]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose weights do not fit the configured model."""


def plain_class_names(names: Any) -> list[str] | dict[str, list[str]] | None:
    """Class names as a checkpoint keeps them: a list, or a list per head."""
    if names is None:
        return None
    if isinstance(names, Mapping):
        return {str(head): [str(n) for n in values] for head, values in names.items()}
    return [str(n) for n in names]


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    loaded: Mapping[str, Any],
    checkpoint: str | Path | None = None,
    listed: int = 5,
) -> None:
    """Raise `CheckpointMismatchError` naming the missing, unexpected and reshaped keys (and the
    run's config.yaml when `checkpoint` sits in a run directory's `checkpoints/`)."""
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    reshaped = [
        f"{k} {tuple(loaded[k].shape)} in the checkpoint, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in loaded and hasattr(loaded[k], "shape") and loaded[k].shape != v.shape
    ]
    if not (missing or unexpected or reshaped):
        return
    name = f"{checkpoint} was" if checkpoint else "the checkpoint was"
    lines = [f"{name} trained with another model configuration:"]
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)):
        if keys:
            more = f" (and {len(keys) - listed} more)" if len(keys) > listed else ""
            lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:listed])}{more}")
    config = Path(checkpoint).parent.parent / "config.yaml" if checkpoint else None
    run_config = str(config) if config is not None and config.is_file() else "RUN_DIR/config.yaml"
    lines.append(
        "Fix: use the config the checkpoint was trained with, its run's config.yaml (next to "
        f"`checkpoints/`): `crossdistill test --config {run_config} --ckpt_path best`; in "
        "Python, `load_from_checkpoint(path)` without overriding the model's arguments"
    )
    raise CheckpointMismatchError("\n".join(lines))


def check_task_agrees(task: Task, datamodule: Any) -> None:
    """The model's task object and the data's task name must be one task: the data builds the
    targets and windows that the task's loss and metrics read."""
    data_kind = getattr(datamodule, "task", None)
    kind = task.data.kind
    if isinstance(data_kind, str) and data_kind != kind:
        raise ConfigError(
            f"the model's task is {type(task).__name__} ({kind}) but the data's task is "
            f"{data_kind!r}. Fix: set data.init_args.task: {kind}, or compose the data "
            f"config of that task (configs/data/ names them), or give the model the "
            f"{data_kind} task"
        )


class TaskModule(pl.LightningModule):
    """Base of the trainable modules: `self.model` on `self.task`, evaluated by the task."""

    model: nn.Module

    def __init__(
        self, task: Task, optimisation: Optimisation | None, predictions_dir: str | None
    ) -> None:
        """`optimisation` is None for a module that only evaluates (a student export)."""
        super().__init__()
        self.task = task
        self.optimisation = optimisation
        self.predictions_dir = predictions_dir
        self.metrics = nn.ModuleDict()
        self.loss_terms: dict[str, torch.Tensor] = {}
        self._test_rows: list[dict] = []
        self._predict_rows: list[dict] = []

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        return self.model(batch["inputs"], batch["mask"])

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        check_task_agrees(self.task, datamodule)
        if hasattr(datamodule, "evaluate_only"):  # evaluation decodes what the model reads
            datamodule.evaluate_only(input_modalities(self.model))
        self.num_classes = datamodule.num_classes
        self.class_names = datamodule.class_names
        for split in ("val", "test"):
            self.metrics[split] = self.task.metrics(self.num_classes)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["task_state"] = self.task.state_dict()
        # the logit order, so that a teacher's logits are never read against other classes
        checkpoint["class_names"] = plain_class_names(getattr(self, "class_names", None))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.task.load_state_dict(checkpoint.get("task_state", {}))
        self.recorded_class_names = checkpoint.get("class_names")

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

    def log_loss_terms(self, terms: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        """Log every term of the training loss as `train/<name>`, and keep them (detached) in
        `self.loss_terms` so that callbacks can tell which term went bad."""
        self.loss_terms = {name: value.detach() for name, value in terms.items()}
        self.log_dict(
            {f"train/{k}": v for k, v in terms.items()},
            batch_size=self.batch_size(batch),
            prog_bar=True,
        )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, **kwargs: Any
    ) -> Any:
        """Load weights; with `strict`, a checkpoint of another model configuration fails with
        the keys that differ and the fix, instead of torch's wall of names."""
        if strict:
            trainer = self._trainer
            check_state_dict(self.state_dict(), state_dict, trainer and trainer.ckpt_path)
        return super().load_state_dict(state_dict, strict=strict, **kwargs)

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
        self._test_rows += self.task.window_rows(predictions, batch)

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
        rows, self._test_rows = self._test_rows, []
        self._write_rows(rows)

    def on_predict_start(self) -> None:
        # rows are kept here and written at the end, not returned to the trainer
        warnings.filterwarnings("ignore", message="predict returned None")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        predictions = self.task.predict(self(batch), batch)
        self._predict_rows += self.task.window_rows(predictions, batch)

    def on_predict_epoch_end(self) -> None:
        rows, self._predict_rows = self._predict_rows, []
        self._write_rows(rows)

    def _write_rows(self, rows: list[dict]) -> None:
        """Gather every rank's prediction rows; rank 0 writes them in `evaluate`'s format."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[list[dict]] = [[] for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if self.trainer.is_global_zero:
            default = Path(self.trainer.log_dir or ".") / "predictions"
            folder = Path(self.predictions_dir) if self.predictions_dir else default
            path = self.task.write_predictions(rows, self.class_names, folder)
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
        settings = self.optimisation
        if settings is None:
            raise RuntimeError(f"{type(self).__name__} evaluates only; it has no optimiser")
        groups = settings.parameter_groups(self.model, self.trainable_parameters())
        optimizer = settings.optimizer(groups)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = max(1, round(settings.warmup_epochs * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_then_decay(total, warmup, settings.schedule)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
