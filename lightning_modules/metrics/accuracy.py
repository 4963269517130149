"""Top-k accuracy of clip recognition, and EPIC-KITCHENS verb / noun / action accuracy.

Ties count against the prediction: the true class is within the top k when fewer than k other
classes score at least as high. So a model that scores every class the same is never right,
where `torch.topk` would pick a winner by index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
