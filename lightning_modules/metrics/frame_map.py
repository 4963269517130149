"""Per-frame mAP for dense multi-label detection (Charades, TSU, MultiTHUMOS protocol).

All valid steps of all videos are pooled; each class gets the non-interpolated average precision
of scikit-learn (precision at each distinct score, weighted by the recall it adds; tied scores
form one threshold). Two means are reported because the literature uses both: over classes with
at least one positive step (`frame_mAP`, what the authors' scripts print) and over all classes
with empty ones counted as 0 (`frame_mAP_all`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Ties = Literal["together", "in_order"]
"""How tied scores rank: as one threshold (scikit-learn, the default), or one by one in input
order (the THUMOS-derived Charades localisation evaluator's stable sort)."""


def average_precision(
    scores: np.ndarray, targets: np.ndarray, ties: Ties = "together"
) -> np.ndarray:
    """Per-class AP of `(N, K)` scores against `(N, K)` binary targets; NaN without positives."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be equal (N, K)")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    ap = np.full(scores.shape[1], np.nan)
    for k in range(scores.shape[1]):
        positives = targets[:, k].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, k], kind="stable")
        sorted_scores, hits = scores[order, k], targets[order, k]
        if ties == "together":  # the last index of each run of equal scores is one threshold
            last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
        else:
            last = np.arange(len(hits))
        true_pos = np.cumsum(hits)[last]
        precision = true_pos / (last + 1)
        recall_gain = np.diff(true_pos, prepend=0) / positives
        ap[k] = float(np.sum(recall_gain * precision))
    return ap


def frame_map(
    scores: np.ndarray, targets: np.ndarray, ties: Ties = "together", weighted: bool = False
) -> dict[str, float]:
    """`frame_mAP` (classes with a positive) and `frame_mAP_all` (every class, empty ones 0);
    `weighted` adds `frame_wAP` (see `summarize_frame_ap`)."""
    ap = average_precision(scores, targets, ties)
    return summarize_frame_ap(ap, np.asarray(targets).astype(bool).sum(0) if weighted else None)


def summarize_frame_ap(ap: np.ndarray, positives: np.ndarray | None = None) -> dict[str, float]:
    """The means of per-class APs (NaN for classes without positives): over classes with a
    positive, over all; with each class's `positives`, also weighted by them (`frame_wAP`, the
    Charades evaluator's WAP)."""
    present = ~np.isnan(ap)
    result = {
        "frame_mAP": float(ap[present].mean()) if present.any() else float("nan"),
        "frame_mAP_all": float(np.where(present, ap, 0.0).mean()) if len(ap) else float("nan"),
    }
    if positives is not None:
        total = positives[present].sum()
        result["frame_wAP"] = float((ap * positives)[present].sum() / total) if total else np.nan
    return result
