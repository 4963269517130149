"""Dense per-step multi-label detection (Charades, TSU, PKU-MMD): masked BCE per stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from datamodules.grid import place_window, video_steps
from datamodules.tasks import DENSE, ClassNames
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

    Test predictions: `frames.npz`, one `(T, K)` score array per video on the video's whole
    grid (windows put back in place), `classes`, and `stride` (seconds per row, when every
    video has the same).
    """

    main_metric = "frame_mAP"
    data = DENSE
    predictions_file = "frames.npz"

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

    def prediction_row(self, predictions: Tensor, batch: Mapping[str, Any], b: int) -> dict:
        valid = batch["mask"][b].bool().cpu()
        return {"scores": predictions[b].float().cpu().numpy()[:, valid.numpy()]}

    def write_rows(self, rows: Sequence[dict], class_names: ClassNames, path: Path) -> None:
        classes = list(class_names)
        videos: dict[str, np.ndarray] = {}
        for row in rows:
            steps = video_steps(row["duration"], row["stride"])
            scores = videos.setdefault(
                row["video_id"], np.full((steps, len(classes)), np.nan, np.float32)
            )
            place_window(scores, row["scores"].T, row["t0"], row["stride"])
        for video_id, scores in videos.items():
            if np.isnan(scores).any():
                missing = int(np.isnan(scores[:, 0]).sum())
                raise RuntimeError(
                    f"{video_id}: {missing} steps were never scored by a test window"
                )
        strides = {row["stride"] for row in rows}
        # the seconds per row, so that `evaluate frames` places rows in time, not spread over it
        stride = {"stride": np.float64(strides.pop())} if len(strides) == 1 else {}
        np.savez_compressed(path, classes=np.array(classes), **stride, **videos)
