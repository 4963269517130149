"""Top-k accuracy of clip recognition, and EPIC-KITCHENS verb / noun / action accuracy.

Ties count against the prediction: the true class is within the top k when fewer than k other
classes score at least as high. So a model that scores every class the same is never right,
where `torch.topk` would pick a winner by index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from lightning_modules.metrics.samples import SampleIds, SampleMetric


def label_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of the true class of each row of `(N, K)` scores; ties rank it last."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (len(scores),):
        raise ValueError(f"scores {scores.shape} must be (N, K) and labels {labels.shape} (N,)")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]})")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    true_score = scores[np.arange(len(labels)), labels]
    return (scores >= true_score[:, None]).sum(axis=1) - 1


def topk_accuracy(
    scores: np.ndarray, labels: np.ndarray, top_k: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """`{"top1": ..., "top5": ...}`: fractions of rows whose true class is among the k best
    (k >= K is always right)."""
    rank = label_rank(scores, labels)
    return {f"top{k}": float((rank < k).mean()) for k in top_k}


def action_accuracy(
    verb_scores: np.ndarray,
    verb_labels: np.ndarray,
    noun_scores: np.ndarray,
    noun_labels: np.ndarray,
) -> float:
    """EPIC-KITCHENS action top-1: verb and noun both right."""
    verb_right = label_rank(verb_scores, verb_labels) == 0
    noun_right = label_rank(noun_scores, noun_labels) == 0
    return float((verb_right & noun_right).mean())


class TopKAccuracy(SampleMetric):
    """Top-k accuracies (`top1`, `top5`, ...) over clips, each clip counted once under DDP."""

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = tuple(top_k)
        self.add_table("clips", scores=(torch.float32, (num_classes,)), labels=(torch.int64, ()))

    def update(self, scores: Tensor, labels: Tensor, clip_ids: SampleIds) -> None:
        """Add clips: scores `(B, K)` (logits or probabilities), labels `(B,)`."""
        owner = torch.arange(len(labels))
        self.append(clip_ids, {"clips": (owner, {"scores": scores, "labels": labels})})

    def compute(self) -> dict[str, Tensor]:
        _, tables = self.rows()
        _, clips = tables["clips"]
        values = topk_accuracy(clips["scores"], clips["labels"], self.top_k)
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in values.items()}


class EpicAccuracy(SampleMetric):
    """EPIC-KITCHENS-100 verb and noun top-1/top-5 and action top-1 (both right)."""

    def __init__(self, num_verbs: int = 97, num_nouns: int = 300, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_table(
            "clips",
            verb_scores=(torch.float32, (num_verbs,)),
            noun_scores=(torch.float32, (num_nouns,)),
            verb_labels=(torch.int64, ()),
            noun_labels=(torch.int64, ()),
        )

    def update(
        self,
        verb_scores: Tensor,
        noun_scores: Tensor,
        verb_labels: Tensor,
        noun_labels: Tensor,
        clip_ids: SampleIds,
    ) -> None:
        """Add clips: verb scores `(B, 97)`, noun scores `(B, 300)`, labels `(B,)` each."""
        columns = {
            "verb_scores": verb_scores,
            "noun_scores": noun_scores,
            "verb_labels": verb_labels,
            "noun_labels": noun_labels,
        }
        self.append(clip_ids, {"clips": (torch.arange(len(verb_labels)), columns)})

    def compute(self) -> dict[str, Tensor]:
        _, tables = self.rows()
        _, clips = tables["clips"]
        values = {}
        for head in ("verb", "noun"):
            accuracy = topk_accuracy(clips[f"{head}_scores"], clips[f"{head}_labels"])
            values.update({f"{head}_{name}": value for name, value in accuracy.items()})
        values["action_top1"] = action_accuracy(
            clips["verb_scores"], clips["verb_labels"], clips["noun_scores"], clips["noun_labels"]
        )
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in values.items()}
