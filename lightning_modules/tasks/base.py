"""What a task knows: its loss on a model's outputs, how outputs become predictions, and the
file those predictions are written to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from datamodules.tasks import ClassNames, TaskData
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.predictions import merged_rows, window_meta


def sample_ids(batch: Mapping[str, Any]) -> list[str]:
    """One id per sample: a video's windows are distinct samples for the metrics' de-duplication
    under DDP, while a padded duplicate of the same window shares its id."""
    meta = batch["meta"]
    return [
        f"{vid}@{int(w)}" for vid, w in zip(meta["video_id"], meta["window_index"], strict=True)
    ]


class Task:
    """Base of `DenseTask`, `SegmentTask` and `ClipTask`.

    The Teacher and Distill modules call only these methods, so they stay task-agnostic.
    Losses are computed in float32 whatever the autocast precision of the model. The task also
    owns its metrics and its prediction file, so every module reports the same numbers for it
    and writes what `crossdistill evaluate` reads.
    """

    main_metric: str = "loss"
    """The metric name (as `compute_metrics` returns it) that model selection maximises."""
    data: ClassVar[TaskData]
    """The data side of this task (`datamodules.tasks`; its `kind` is the data config's
    `task:`), whose targets and windows the task's loss reads."""
    predictions_file: ClassVar[str]
    """The name of the test predictions' file in the predictions folder."""

    def loss(self, output: ModelOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """`{"loss": total, ...named parts for logging}` for a batch."""
        raise NotImplementedError

    def predict(self, output: ModelOutput, batch: Mapping[str, Any]) -> Any:
        """Predictions in the form the task's metric takes (see each task)."""
        raise NotImplementedError

    def metrics(self, num_classes: int) -> nn.ModuleDict:
        """Fresh torchmetrics for one evaluation stage (DDP-exact, see `metrics.streaming`)."""
        raise NotImplementedError

    def update_metrics(
        self, metrics: nn.ModuleDict, output: ModelOutput, batch: Mapping[str, Any]
    ) -> None:
        raise NotImplementedError

    def window_rows(self, predictions: Any, batch: Mapping[str, Any]) -> list[dict]:
        """Plain-python rows (one per window) of a batch's predictions, cheap to gather."""
        return [
            {**meta, **self.prediction_row(predictions, batch, b)}
            for b, meta in enumerate(window_meta(batch))
        ]

    def prediction_row(self, predictions: Any, batch: Mapping[str, Any], b: int) -> dict:
        """The predictions of sample `b` of a batch as plain values (numpy arrays, numbers)."""
        raise NotImplementedError

    def write_predictions(
        self, rows: Sequence[dict], class_names: ClassNames, folder: Path
    ) -> Path:
        """Merge window rows (duplicates from DDP padding dropped) and write the task's file."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.predictions_file
        self.write_rows(merged_rows(rows), class_names, path)
        return path

    def write_rows(self, rows: Sequence[dict], class_names: ClassNames, path: Path) -> None:
        """Write the merged rows, in video and window order, in `crossdistill evaluate`'s
        format."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, float]:
        """What the task learns while training (kept in checkpoints for an exact resume)."""
        return {}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore `state_dict()` from a checkpoint."""

    @staticmethod
    def compute_metrics(metrics: nn.ModuleDict) -> dict[str, float]:
        """Every metric's values as a flat `{name: float}` (names as `crossdistill evaluate`; a
        metric with a single value is named by its key, e.g. `ece`)."""
        flat: dict[str, float] = {}
        for key, metric in metrics.items():
            value = metric.compute()
            items = value.items() if isinstance(value, dict) else [(key, value)]
            flat.update({name: float(v) for name, v in items})
        return flat
