"""Trimmed clip recognition (Something-Something, EPIC-KITCHENS): cross-entropy per head.

Test views (several temporal or spatial crops of one clip) arrive folded into the batch: every
modality tensor and the mask hold `B * V` rows, the `V` views of a sample contiguous
(sample `b` in rows `b*V .. b*V + V - 1`), while `batch["targets"]["clip"]` keeps `B` rows.
The model runs on every view; the task infers `V` from the two batch sizes and averages the
logits over views before the loss and the predictions. Training batches simply have `V = 1`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.tasks import CLIPS, ClassNames
from lightning_modules.metrics.streaming import (
    EpicAccuracy,
    ExpectedCalibrationError,
    TopKAccuracy,
)
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.tasks.base import Task, sample_ids


def average_views(logits: Tensor, samples: int) -> Tensor:
    """`(B * V, K)` logits to `(B, K)`, the mean over each sample's `V` contiguous views."""
    if logits.shape[0] % samples:
        raise ValueError(f"{logits.shape[0]} rows of logits are not views of {samples} samples")
    return logits.unflatten(0, (samples, -1)).mean(dim=1)


class ClipTask(Task):
    """Cross-entropy against `batch["targets"]["clip"]`: `(B,)` for a single head, or a dict of
    `(B,)` per head (`verb`, `noun`) matching the model's dict of logits; the loss is the mean
    over heads, each head also reported. Predictions: softmax probabilities of the
    view-averaged logits, in the logits' structure (a tensor or a dict per head).

    Metrics: top-1/top-5 and ECE (15 bins) for a single head; EPIC-KITCHENS verb, noun and
    action accuracy for `verb`/`noun` heads, with `num_classes` then `{"verb": V, "noun": N}`.

    Test predictions: `clips.json`, per clip (`VIDEO@INDEX`) and head the true label's name
    and the probabilities, with the class names of each head."""

    main_metric = "top1"
    data = CLIPS
    predictions_file = "clips.json"

    def loss(self, output: ModelOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits, targets = self._heads(output, batch)
        parts = {name: F.cross_entropy(logits[name], targets[name]) for name in logits}
        if isinstance(output.logits, Tensor):
            return {"loss": parts["clip"]}
        return {"loss": torch.stack(list(parts.values())).mean(), **parts}

    def predict(self, output: ModelOutput, batch: Mapping[str, Any]) -> Tensor | dict[str, Tensor]:
        logits, _ = self._heads(output, batch)
        probabilities = {name: value.softmax(dim=-1) for name, value in logits.items()}
        return probabilities["clip"] if isinstance(output.logits, Tensor) else probabilities

    @staticmethod
    def _heads(
        output: ModelOutput, batch: Mapping[str, Any]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """View-averaged float32 logits and the targets, both as dicts per head."""
        targets = batch["targets"]["clip"]
        targets = {"clip": targets} if isinstance(targets, Tensor) else dict(targets)
        logits = output.logits
        logits = {"clip": logits} if isinstance(logits, Tensor) else dict(logits)
        if logits.keys() != targets.keys():
            raise ValueError(f"model heads {sorted(logits)} != target heads {sorted(targets)}")
        samples = len(next(iter(targets.values())))
        return {n: average_views(v.float(), samples) for n, v in logits.items()}, targets

    def metrics(self, num_classes: int | dict[str, int]) -> nn.ModuleDict:
        if isinstance(num_classes, dict):
            self.main_metric = "action_top1"
            return nn.ModuleDict({"epic": EpicAccuracy(num_classes["verb"], num_classes["noun"])})
        return nn.ModuleDict(
            {"accuracy": TopKAccuracy(num_classes), "ece": ExpectedCalibrationError(num_classes)}
        )

    def update_metrics(
        self, metrics: nn.ModuleDict, output: ModelOutput, batch: Mapping[str, Any]
    ) -> None:
        probabilities = self.predict(output, batch)
        _, targets = self._heads(output, batch)
        ids = sample_ids(batch)
        if "epic" in metrics:
            metrics["epic"].update(
                probabilities["verb"], probabilities["noun"], targets["verb"], targets["noun"], ids
            )
            return
        metrics["accuracy"].update(probabilities, targets["clip"], ids)
        metrics["ece"].update(probabilities, targets["clip"], ids)

    def prediction_row(
        self, predictions: Tensor | dict[str, Tensor], batch: Mapping[str, Any], b: int
    ) -> dict:
        heads = predictions if isinstance(predictions, Mapping) else {"clip": predictions}
        targets = batch["targets"]["clip"]
        targets = targets if isinstance(targets, Mapping) else {"clip": targets}
        return {
            "scores": {h: p[b].float().cpu().numpy() for h, p in heads.items()},
            "labels": {h: int(t[b]) for h, t in targets.items()},
        }

    def write_rows(self, rows: Sequence[dict], class_names: ClassNames, path: Path) -> None:
        heads = (
            dict(class_names) if isinstance(class_names, Mapping) else {"clip": list(class_names)}
        )
        clips = {
            f"{row['video_id']}@{row['window_index']}": {
                head: {
                    "label": heads[head][row["labels"][head]],
                    "scores": row["scores"][head].tolist(),
                }
                for head in heads
            }
            for row in rows
        }
        payload = {
            "scores": "probabilities",
            "heads": {h: list(n) for h, n in heads.items()},
            "clips": clips,
        }
        path.write_text(json.dumps(payload))
