"""Recall of temporal segments: the top-kx recall of detections and the average recall of
proposals against their average number per video (AR@AN), both at tIoU thresholds.

**Top-kx recall** (OpenTAD's `recall@tIoU@k`, reported beside ActionFormer-style mAP): per
(video, class) with ground truth, the k * n best-scored predictions of that class in that video
are kept, n being the video's ground-truth segments of the class; a ground-truth segment is
recalled when one kept prediction reaches the threshold with it (no one-to-one matching). A
class's recall is over its ground-truth segments; the reported value is the mean over classes
with ground truth. Predictions of videos without ground truth of their class change nothing.

**AR@AN** (the ActivityNet proposal task, `eval_proposal.py`): class-agnostic proposals are taken
per video by descending score, `int(n * ratio)` of a video's n, where ratio = AN_max * videos /
proposals in the file; the curve's point j = 1..100 keeps `int(kept * j / 100 * AN_max * videos
/ all kept)` of each video's kept proposals, and recalls the ground-truth segments that one of
them reaches (no one-to-one matching). Videos are those with ground truth. The area under the
average-recall curve is divided by its last number of proposals per video (AUC as a fraction).

Both rank tied scores by start, then end (the official tools' unstable sorts leave them to the
sort), and a segment ending before it starts reaches nothing but keeps its rank, as there. Two
zero-length segments: `zero_length="strict"` matches them where they coincide (tIoU 1);
`"no_match"` never (the official tools compute 0 or NaN, which reaches no threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from lightning_modules.metrics.segment_map import pairs_of_runs, ranking_order, temporal_iou

RecallZeroLength = Literal["strict", "no_match"]
AR_POINTS = 100
"""Points of the AR-AN curve, as the ActivityNet proposal evaluator samples it."""


def topkx_recall(
    *,
    pred_video: np.ndarray,
    pred_label: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    gt_video: np.ndarray,
    gt_label: np.ndarray,
    gt_segments: np.ndarray,
    num_classes: int,
    tious: Sequence[float],
    top_k: Sequence[int] = (1, 5),
    zero_length: RecallZeroLength = "strict",
) -> np.ndarray:
    """Recall `(len(tious), len(top_k), num_classes)`; NaN for classes without ground truth."""
    pred_key = np.asarray(pred_video, np.int64) * num_classes + np.asarray(pred_label, np.int64)
    gt_key = np.asarray(gt_video, np.int64) * num_classes + np.asarray(gt_label, np.int64)
    pred_segments = np.asarray(pred_segments, np.float64).reshape(-1, 2)
    gt_segments = np.asarray(gt_segments, np.float64).reshape(-1, 2)
    scores = np.asarray(pred_scores, np.float64)
    ks = np.asarray(top_k, np.int64)
    if not len(ks) or (ks < 1).any():
        raise ValueError(f"top-k values must be positive integers, got {list(top_k)}")
    thresholds = np.asarray(tious, np.float64)

    gt_order = np.lexsort((gt_segments[:, 1], gt_segments[:, 0], gt_key))
    keys, first, count = np.unique(gt_key[gt_order], return_index=True, return_counts=True)
    # predictions of keys with ground truth, by key, descending score, start, end
    group = np.searchsorted(keys, pred_key).clip(max=max(len(keys) - 1, 0))
    has_gt = (keys[group] == pred_key) if len(keys) else np.zeros(len(pred_key), bool)
    rows, group, rank = _ranked(np.flatnonzero(has_gt), group, scores, pred_segments, len(keys))
    keep = rank < ks.max() * count[group]
    rows, group, rank = rows[keep], group[keep], rank[keep]

    # pairs (kept prediction, ground truth of its key), ground truth in sorted order
    width = count[group]
    pair_pred, pair_gt = pairs_of_runs(first[group], width)
    iou = _reaching_iou(pred_segments[rows[pair_pred]], gt_segments[gt_order][pair_gt], zero_length)

    recalled = np.zeros((len(thresholds), len(ks), len(gt_key)), dtype=bool)
    for j, k in enumerate(ks.tolist()):
        within = rank[pair_pred] < k * width[pair_pred]
        best = np.full(len(gt_key), -np.inf)
        np.maximum.at(best, pair_gt[within], iou[within])
        recalled[:, j] = best[None, :] >= thresholds[:, None]
    labels = np.asarray(gt_label, np.int64)[gt_order]
    num_gt = np.bincount(labels, minlength=num_classes).astype(np.float64)
    hits = np.array(
        [
            [np.bincount(labels, recalled[t, j], minlength=num_classes) for j in range(len(ks))]
            for t in range(len(thresholds))
        ]
    ).reshape(len(thresholds), len(ks), num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(num_gt > 0, hits / num_gt, np.nan)


def average_recall_curve(
    *,
    pred_video: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    gt_video: np.ndarray,
    gt_segments: np.ndarray,
    tious: Sequence[float],
    max_average_proposals: float = 100,
    zero_length: RecallZeroLength = "strict",
) -> tuple[np.ndarray, np.ndarray]:
    """Recall `(len(tious), 100)` of ground-truth segments and the average number of proposals
    per video `(100,)` at each point of the curve.

    Every row counts in the sampling ratio, those of videos without ground truth included (as
    the official ratio counts the file's proposals); only those of evaluated videos recall.
    """
    pred_video = np.asarray(pred_video, np.int64)
    pred_segments = np.asarray(pred_segments, np.float64).reshape(-1, 2)
    scores = np.asarray(pred_scores, np.float64)
    gt_video = np.asarray(gt_video, np.int64)
    gt_segments = np.asarray(gt_segments, np.float64).reshape(-1, 2)
    thresholds = np.asarray(tious, np.float64)
    videos = np.unique(gt_video)
    if not len(videos):
        raise ValueError("no ground-truth segments to recall")
    if not len(pred_video):
        raise ValueError("no proposals to evaluate")
    ratio = max_average_proposals * float(len(videos)) / len(pred_video)  # the official expression

    # proposals of evaluated videos by video, descending score, start, end; each video's first
    # int(n * ratio) kept
    slot = np.searchsorted(videos, pred_video).clip(max=len(videos) - 1)
    evaluated = np.flatnonzero(videos[slot] == pred_video)
    rows, slot, rank = _ranked(evaluated, slot, scores, pred_segments, len(videos))
    proposals = np.bincount(slot, minlength=len(videos))
    kept = np.minimum((proposals * ratio).astype(np.int64), proposals)
    keep = rank < kept[slot]
    rows, slot, rank = rows[keep], slot[keep], rank[keep]
    total = int(kept.sum())
    if total == 0:
        raise ValueError("no proposal of an evaluated video is kept (too few proposals)")

    # each ground-truth segment's first rank reaching each threshold (kept count if none)
    gt_slot = np.searchsorted(videos, gt_video)
    gt_order = np.argsort(gt_slot, kind="stable")
    gt_slot = gt_slot[gt_order]
    gt_first = np.searchsorted(gt_slot, np.arange(len(videos)))
    gt_count = np.bincount(gt_slot, minlength=len(videos))
    pair_pred, pair_gt = pairs_of_runs(gt_first[slot], gt_count[slot])
    iou = _reaching_iou(pred_segments[rows[pair_pred]], gt_segments[gt_order][pair_gt], zero_length)
    first_hit = np.full((len(thresholds), len(gt_slot)), np.iinfo(np.int64).max)
    for t, threshold in enumerate(thresholds.tolist()):
        reached = iou >= threshold
        np.minimum.at(first_hit[t], pair_gt[reached], rank[pair_pred[reached]])

    # the official sampling: fractions of each video's kept proposals (a video without any
    # counts as one empty column, which recalls nothing)
    fractions = (
        np.arange(1, AR_POINTS + 1) / 100.0 * (max_average_proposals * float(len(videos)) / total)
    )
    columns = np.where(proposals > 0, kept, 1)
    taken = np.minimum((columns[:, None] * fractions).astype(np.int64), columns[:, None])
    recall = (first_hit[:, :, None] < taken[gt_slot][None]).sum(axis=1) / len(gt_slot)
    return recall, fractions * (float(total) / len(videos))


def area_under_curve(average_recall: np.ndarray, proposals_per_video: np.ndarray) -> float:
    """Area under the average recall against proposals per video, over the last of those (the
    ActivityNet proposal task's AUC, as a fraction)."""
    return float(np.trapezoid(average_recall, proposals_per_video) / proposals_per_video[-1])


def _ranked(
    rows: np.ndarray, group: np.ndarray, scores: np.ndarray, segments: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rows` by group, descending score, start, end (`ranking_order`), with their groups and
    their rank within the group."""
    rows = rows[
        ranking_order(
            scores[rows], group[rows], np.zeros(len(rows), np.int64), segments[rows], groups
        )
    ]
    group = group[rows]
    return rows, group, np.arange(len(rows)) - np.searchsorted(group, group)


def _reaching_iou(pred: np.ndarray, gt: np.ndarray, zero_length: RecallZeroLength) -> np.ndarray:
    """tIoU of pairs for recall: a prediction ending before it starts reaches nothing, and with
    `no_match` neither does a pair of zero union."""
    iou = temporal_iou(pred, gt, "strict")
    empty = (pred[:, 1] - pred[:, 0]) + (gt[:, 1] - gt[:, 0]) <= 0
    return np.where((pred[:, 1] < pred[:, 0]) | (empty & (zero_length == "no_match")), -np.inf, iou)
