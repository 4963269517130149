"""Detection mAP at temporal IoU thresholds (ActivityNet / THUMOS14 protocol).

Per class, predictions are taken in descending score. Each one is matched to the not yet
matched ground-truth segment of the same video and class with the highest tIoU at or above the
threshold, else it is a false positive. AP is interpolated: precision is made monotone (the
best precision at this recall or beyond) and summed over the recall steps. Classes with ground
truth but no prediction have AP 0; classes without ground truth are left out of the mean.
`average_mAP` is the mean over thresholds.

Ties are broken by content, never by input order, so the result does not depend on how rows
were batched, gathered or written: equal scores go by video index, then start, then end; equal
tIoUs by the ground truth's start, then end. (Rows that agree in all of these are
interchangeable.)

Two identical zero-length segments have tIoU 1 (the limit of identical segments); any other pair
with zero union has tIoU 0. ActivityNet's ground truth holds such segments. The official
evaluators compute 0/0 = NaN for every pair of zero-length segments, which sorts first and passes
every threshold: a zero-length prediction then matches a zero-length ground-truth segment of its
class anywhere in the video. `zero_length="official"` reproduces that (ties among such segments
go by start, then end).

Speed: the greedy matching is sequential only among predictions that compete for the same
ground truth, those of one (video, class) pair. So it runs over ranks within the pairs: step r
matches the r-th best prediction of every pair at once, at every threshold at once (one bit per
threshold). ActivityNet-sized input takes about 0.1 s; `experiments/benchmarks/evaluation.py`
compares it with a per-prediction loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

# the official evaluators' exact values, `np.linspace` (0.8999999999999999, 0.6000000000000001):
# a tIoU that computes to 0.8999999999999999 is a true positive there, so it is here too
ACTIVITYNET_TIOUS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
THUMOS14_TIOUS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.3, 0.7, 5))
_MAX_THRESHOLDS = 63  # the matching keeps one bit per threshold in a uint64


ZeroLength = Literal["strict", "official"]


def temporal_iou(a: np.ndarray, b: np.ndarray, zero_length: ZeroLength = "strict") -> np.ndarray:
    """tIoU of `(..., 2)` segments `a` and `b` (broadcast), with the zero-length rule above."""
    inter = np.maximum(0.0, np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]))
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    if zero_length == "official":  # their NaN: first in the ranking, through every threshold
        iou = np.full(np.broadcast(a[..., 0], b[..., 0]).shape, np.inf)
    else:  # where the union is empty
        iou = np.array(a[..., 0] == b[..., 0], dtype=np.float64)
    return np.divide(inter, union, out=iou, where=union > 0)


def segment_average_precision(
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
    zero_length: ZeroLength = "strict",
) -> np.ndarray:
    """AP `(len(tious), num_classes)`; NaN for classes without ground truth.

    Videos are indices (non-negative integers), labels lie in [0, num_classes), segments are
    `(N, 2)` start/end in seconds. `zero_length`: how two zero-length segments match (module
    docstring).
    """
    pred_video, pred_label = np.asarray(pred_video, np.int64), np.asarray(pred_label, np.int64)
    pred_segments = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
    pred_scores = np.asarray(pred_scores, dtype=np.float64)
    gt_video, gt_label = np.asarray(gt_video, np.int64), np.asarray(gt_label, np.int64)
    gt_segments = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    thresholds = np.asarray(tious, dtype=np.float64)
    _check(pred_video, pred_label, pred_segments, num_classes, "prediction", pred_scores)
    _check(gt_video, gt_label, gt_segments, num_classes, "ground-truth")
    if (
        thresholds.ndim != 1
        or not 0 < len(thresholds) <= _MAX_THRESHOLDS
        or not ((thresholds > 0) & (thresholds <= 1)).all()
    ):
        raise ValueError(
            f"tIoU thresholds must be 1 to {_MAX_THRESHOLDS} values in (0, 1], got {list(tious)}"
        )

    order = ranking_order(pred_scores, pred_label, pred_video, pred_segments, num_classes)
    label = pred_label[order]
    ascending = np.argsort(thresholds, kind="stable")
    matchable, hit_bits = _greedy_match(
        order,
        pred_video * num_classes + pred_label,
        pred_segments,
        gt_video * num_classes + gt_label,
        gt_segments,
        thresholds[ascending],
        zero_length,
    )

    # Only predictions that hit at some threshold matter: precision peaks at hits, and the
    # envelope is only read there. They come in class order, so each class is one slice.
    hit_any = np.flatnonzero(hit_bits)
    rows, hit_bits = matchable[hit_any], hit_bits[hit_any]
    hits = np.empty((len(rows), len(thresholds)), dtype=bool)
    hits[:, ascending] = (hit_bits[:, None] >> np.arange(len(thresholds), dtype=np.uint64)) & 1
    num_gt = np.bincount(gt_label, minlength=num_classes)
    class_start = np.searchsorted(label, np.arange(num_classes))
    rank = rows - class_start[label[rows]] + 1  # position in the class's ranking
    bounds = np.searchsorted(label[rows], np.arange(num_classes + 1))
    ap = np.full((len(thresholds), num_classes), np.nan)
    for k in np.flatnonzero(num_gt):
        class_hits = hits[bounds[k] : bounds[k + 1]]
        precision = np.cumsum(class_hits, axis=0) / rank[bounds[k] : bounds[k + 1], None]
        envelope = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
        ap[:, k] = (envelope * class_hits).sum(axis=0) / num_gt[k]
    return ap


def ranking_order(
    scores: np.ndarray,
    labels: np.ndarray,
    videos: np.ndarray,
    segments: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Order by class, descending score, video, start, end (classes: integers in
    [0, num_classes], any grouping key)."""
    order = np.argsort(-scores)  # quicksort, several times faster than lexsort
    if (np.diff(scores[order]) == 0).any():  # ties: the full key decides
        order = np.lexsort((segments[:, 1], segments[:, 0], videos, -scores))
    return order[_stable_argsort(labels[order], num_classes)]


def _greedy_match(
    order: np.ndarray,
    pred_key: np.ndarray,
    pred_segments: np.ndarray,
    gt_key: np.ndarray,
    gt_segments: np.ndarray,
    thresholds: np.ndarray,
    zero_length: ZeroLength,
) -> tuple[np.ndarray, np.ndarray]:
    """True positives of predictions taken in `order`, keyed by (video, class), at ascending
    thresholds.

    Returns the ascending positions in `order` of the predictions that reach the lowest
    threshold with some ground truth of their key, and their hits as bits (bit t: a hit at
    threshold t); every other prediction is a false positive that changes nothing.
    """
    nothing = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    gt_order = np.lexsort((gt_segments[:, 1], gt_segments[:, 0], gt_key))
    groups, gt_first, gt_count = np.unique(gt_key[gt_order], return_index=True, return_counts=True)
    if not len(groups) or not len(pred_key):
        return nothing
    # looked up in input order: inputs come video by video, which keeps the search in cache
    group = np.searchsorted(groups, pred_key).clip(max=len(groups) - 1)
    candidate = np.flatnonzero((groups[group] == pred_key)[order])  # positions in `order`
    group = group[order[candidate]]

    # pairs (candidate, ground truth of its key), ground truth numbered in (key, start, end)
    # order, with the number of thresholds they reach; pairs reaching none are dropped
    width = gt_count[group]
    pair_pred, pair_gt = pairs_of_runs(gt_first[group], width)
    iou = temporal_iou(
        np.take(pred_segments, order[candidate[pair_pred]], axis=0),
        np.take(gt_segments[gt_order], pair_gt, axis=0),
        zero_length,
    )
    kept = np.flatnonzero(iou >= thresholds[0])
    kept = kept[_useful(group[pair_pred[kept]], iou[kept], gt_count, thresholds)]
    if not len(kept):
        return nothing
    pair_pred, pair_gt, iou = pair_pred[kept], pair_gt[kept], iou[kept]
    first_pair = np.flatnonzero(np.diff(pair_pred, prepend=-1))
    alive = pair_pred[first_pair]
    hits = _claim(
        group[alive],
        np.diff(first_pair, append=len(pair_pred)),
        pair_gt,
        iou,
        thresholds,
        len(gt_key),
        len(groups),
    )
    return candidate[alive], hits


def _useful(
    pair_group: np.ndarray, iou: np.ndarray, gt_count: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Indices of the pairs (in matching order) that can change the outcome.

    A key with one ground truth gives it, at each threshold, to the first prediction that
    reaches it: a later one reaching no threshold beyond those the earlier ones reached is a
    false positive that changes nothing. (Counts of thresholds are integers: exact maxima.)
    """
    reached = np.searchsorted(thresholds, iou, side="right")
    single = np.flatnonzero(gt_count[pair_group] == 1)
    single = single[_stable_argsort(pair_group[single], len(gt_count))]
    level = pair_group[single] * (_MAX_THRESHOLDS + 1) + reached[single]
    best_before = np.maximum.accumulate(np.concatenate([[-1], level[:-1]]))
    useful = np.ones(len(pair_group), dtype=bool)
    useful[single[level <= best_before]] = False
    return np.flatnonzero(useful)


def _claim(
    key: np.ndarray,
    pairs_of: np.ndarray,
    pair_gt: np.ndarray,
    iou: np.ndarray,
    thresholds: np.ndarray,
    num_gt: int,
    num_keys: int,
) -> np.ndarray:
    """Hit bits of predictions (in matching order; their keys, and their `pairs_of` pairs
    laid out one prediction after another).

    Step r takes the r-th prediction of every key at once: at each threshold, a prediction
    claims its first free pair in descending tIoU. Thresholds are the bits of one integer per
    pair, so a step is a few integer operations on arrays.
    """
    first_pair = _starts(pairs_of)
    count = np.bincount(key, minlength=num_keys)
    rank = np.empty(len(key), dtype=np.int64)  # within the key
    rank[_stable_argsort(key, num_keys)] = np.arange(len(key)) - np.repeat(_starts(count), count)
    reached = np.searchsorted(thresholds, iou, side="right").astype(np.uint64)
    passes = (np.uint64(1) << reached) - np.uint64(1)  # bit t: reaches threshold t

    # each prediction's pairs by descending tIoU (ties: ground-truth order); `position` in it
    owner = np.repeat(np.arange(len(key)), pairs_of)
    shared = np.flatnonzero(pairs_of[owner] > 1)
    by_iou = np.arange(len(pair_gt))
    by_iou[shared] = shared[np.lexsort((-iou[shared], owner[shared]))]
    pair_gt, passes = pair_gt[by_iou], passes[by_iou]
    position = np.arange(len(pair_gt)) - first_pair[owner]

    # slots: predictions by rank, then by more pairs first, so that in step r the pairs at
    # position j belong to the first slots of the step; pairs by (rank, position, slot)
    max_pairs, max_rank = int(pairs_of.max()), int(rank.max())
    by_slot = _stable_argsort(max_pairs - pairs_of, max_pairs)
    by_slot = by_slot[_stable_argsort(rank[by_slot], max_rank)]
    slot = np.empty(len(key), dtype=np.int64)
    slot[by_slot] = np.arange(len(key))
    pair_order = np.arange(len(pair_gt)) + np.repeat(
        first_pair[by_slot] - _starts(pairs_of[by_slot]), pairs_of[by_slot]
    )
    pair_order = pair_order[_stable_argsort(position[pair_order], max_pairs)]
    pair_order = pair_order[_stable_argsort(rank[owner[pair_order]], max_rank)]
    pair_gt, passes = pair_gt[pair_order], passes[pair_order]
    block_key = rank[owner[pair_order]] * max_pairs + position[pair_order]
    block_start = np.flatnonzero(np.diff(block_key, prepend=-1))
    block_slot = np.searchsorted(rank[by_slot], rank[owner[pair_order[block_start]]])

    hits = np.zeros(len(key), dtype=np.uint64)  # by slot
    matched = np.zeros(num_gt, dtype=np.uint64)
    block_end = [*block_start[1:].tolist(), len(pair_gt)]
    for lo, hi, first in zip(block_start.tolist(), block_end, block_slot.tolist(), strict=True):
        gt = pair_gt[lo:hi]
        claim = passes[lo:hi] & ~matched[gt] & ~hits[first : first + hi - lo]
        hits[first : first + hi - lo] |= claim
        matched[gt] |= claim
    return hits[slot]


def _stable_argsort(values: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of integers in [0, bound]; 16-bit ones take numpy's radix sort."""
    if bound <= np.iinfo(np.uint16).max:
        values = values.astype(np.uint16)
    return np.argsort(values, kind="stable")


def pairs_of_runs(first: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row i paired with each of the `width[i]` consecutive positions from `first[i]` (a
    prediction with every ground-truth segment of its group): the row and the position of
    every pair, row by row."""
    row = np.repeat(np.arange(len(width)), width)
    return row, np.arange(len(row)) + np.repeat(first - _starts(width), width)


def _starts(counts: np.ndarray) -> np.ndarray:
    """Start of each run in a concatenation of runs of the given lengths."""
    return np.cumsum(counts) - counts


def _check(
    video: np.ndarray,
    label: np.ndarray,
    segments: np.ndarray,
    num_classes: int,
    what: str,
    scores: np.ndarray | None = None,
) -> None:
    n = len(segments)
    if len(video) != n or len(label) != n or (scores is not None and len(scores) != n):
        raise ValueError(f"{what} arrays have different lengths")
    if n and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f"{what} labels must lie in [0, {num_classes})")
    if n and video.min() < 0:
        raise ValueError(f"{what} video indices must be non-negative")
    if not np.isfinite(segments).all() or (segments[:, 1] < segments[:, 0]).any():
        raise ValueError(f"{what} segments must be finite with start <= end")
    if scores is not None and np.isnan(scores).any():
        raise ValueError(f"{what} scores contain NaN")


def summarize(ap: np.ndarray, tious: Sequence[float]) -> dict:
    """`{"mAP": {"%g" % t: mAP}, "average_mAP": mean}` from the AP table, means over classes
    with ground truth (NaN when no class has any)."""
    present = ~np.isnan(ap[0]) if ap.size else np.zeros(0, dtype=bool)
    per_threshold = ap[:, present].mean(axis=1) if present.any() else np.full(len(tious), np.nan)
    return {
        "mAP": {f"{t:g}": float(value) for t, value in zip(tious, per_threshold, strict=True)},
        "average_mAP": float(per_threshold.mean()),
    }
