"""SegmentMAP against the per-prediction loop of the protocol (experiments/benchmarks), on
hand-worked cases and on random inputs full of ties, duplicates and zero-length segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.benchmarks.evaluation import segment_ap_loop
from lightning_modules.metrics.segment_map import (
    ACTIVITYNET_TIOUS,
    segment_average_precision,
    summarize,
    temporal_iou,
)
from lightning_modules.metrics.streaming import SegmentMAP


def both(pred: list[tuple], gt: list[tuple], num_classes: int, tious) -> tuple[np.ndarray, ...]:
    """AP tables of the vectorised implementation and of the loop, on rows
    (video, label, start, end[, score])."""
    p = np.array(pred, dtype=np.float64).reshape(-1, 5)
    g = np.array(gt, dtype=np.float64).reshape(-1, 4)
    fast = segment_average_precision(
        pred_video=p[:, 0].astype(int),
        pred_label=p[:, 1].astype(int),
        pred_segments=p[:, 2:4],
        pred_scores=p[:, 4],
        gt_video=g[:, 0].astype(int),
        gt_label=g[:, 1].astype(int),
        gt_segments=g[:, 2:4],
        num_classes=num_classes,
        tious=tious,
    )
    loop = segment_ap_loop(
        [(int(v), int(c), s, e, sc) for v, c, s, e, sc in p],
        [(int(v), int(c), s, e) for v, c, s, e in g],
        num_classes,
        tious,
    )
    return fast, loop


def test_hand_worked_example() -> None:
    gt = [(0, 0, 0, 10), (0, 0, 20, 30), (1, 1, 0, 5)]
    pred = [
        (0, 0, 0, 10, 0.9),  # exact: true positive
        (0, 0, 1, 11, 0.8),  # tIoU 9/11 with the taken segment, 0 with the other: false positive
        (0, 0, 20, 28, 0.7),  # tIoU 0.8
        (0, 2, 0, 10, 0.6),  # class 2 has no ground truth: left out
    ]
    for ap in both(pred, gt, 3, (0.5, 0.85)):
        # at 0.5: hits T F T, precision 1, 1/2, 2/3 -> (1 + 2/3) / 2; at 0.85: T F F -> 1/2
        assert ap[:, 0] == pytest.approx([5 / 6, 0.5], abs=1e-15)
        assert ap[:, 1].tolist() == [0.0, 0.0]  # ground truth, no prediction
        assert np.isnan(ap[:, 2]).all()
        summary = summarize(ap, (0.5, 0.85))
        assert summary["mAP"] == pytest.approx({"0.5": 5 / 12, "0.85": 0.25})
        assert summary["average_mAP"] == pytest.approx(1 / 3)


def test_equal_tiou_takes_the_earliest_ground_truth() -> None:
    gt = [(0, 0, 5, 15), (0, 0, 0, 10)]
    # tIoU 0.5 with both: takes [0, 10], so the next one (0.8 with [0, 10] only) misses
    pred = [(0, 0, 5, 10, 0.9), (0, 0, 0, 8, 0.8)]
    for ap in both(pred, gt, 1, (0.5,)):
        assert ap[0, 0] == pytest.approx(0.5)


def test_zero_length_segments_match_only_the_same_point() -> None:
    gt = [(0, 0, 3, 3), (0, 0, 7, 7)]
    pred = [(0, 0, 3, 3, 0.9), (0, 0, 7.5, 7.5, 0.8), (0, 0, 6, 8, 0.7)]
    for ap in both(pred, gt, 1, ACTIVITYNET_TIOUS):
        assert ap[:, 0] == pytest.approx(np.full(10, 0.5))
    iou = temporal_iou(np.array([[3.0, 3.0], [3.0, 3.0], [2.0, 4.0]]), np.array([[3.0, 3.0]]))
    assert iou.tolist() == [1.0, 1.0, 0.0]


def official_ap(pred: list[tuple], gt: list[tuple], num_classes: int, tious) -> np.ndarray:
    """The official ActivityNet evaluator's rule, transcribed: per class, predictions by
    descending score; each one's ground truth of the video by descending tIoU computed as
    intersection / union, so two zero-length segments give 0/0 = NaN, which numpy's argsort puts
    last and the reversed order first, and which no `tiou < threshold` test rejects."""
    ap = np.full((len(tious), num_classes), np.nan)
    for k in range(num_classes):
        truth = [(v, s, e) for v, c, s, e in gt if c == k]
        if not truth:
            continue
        mine = sorted((row for row in pred if row[1] == k), key=lambda row: -row[4])
        tp = np.zeros((len(tious), len(mine)))
        fp = np.zeros((len(tious), len(mine)))
        locked = np.full((len(tious), len(truth)), -1)
        for i, (video, _, start, end, _) in enumerate(mine):
            index = [j for j, row in enumerate(truth) if row[0] == video]
            if not index:
                fp[:, i] = 1
                continue
            bounds = np.array([truth[j][1:] for j in index])
            inter = np.clip(
                np.minimum(end, bounds[:, 1]) - np.maximum(start, bounds[:, 0]), 0, None
            )
            union = (bounds[:, 1] - bounds[:, 0]) + (end - start) - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = inter / union
            ranked = iou.argsort()[::-1]
            for t, threshold in enumerate(tious):
                for j in ranked:
                    if iou[j] < threshold:
                        fp[t, i] = 1
                        break
                    if locked[t, index[j]] >= 0:
                        continue
                    tp[t, i], locked[t, index[j]] = 1, i
                    break
                if not tp[t, i] and not fp[t, i]:
                    fp[t, i] = 1
        for t in range(len(tious)):
            hits, misses = np.cumsum(tp[t]), np.cumsum(fp[t])
            recall = np.concatenate([[0], hits / len(truth), [1]])
            precision = np.concatenate([[0], hits / np.maximum(hits + misses, 1e-12), [0]])
            for i in range(len(precision) - 2, -1, -1):
                precision[i] = max(precision[i], precision[i + 1])
            step = np.flatnonzero(recall[1:] != recall[:-1]) + 1
            ap[t, k] = ((recall[step] - recall[step - 1]) * precision[step]).sum()
    return ap


def ours(pred: list[tuple], gt: list[tuple], num_classes: int, tious, zero_length: str):
    p = np.array(pred, dtype=np.float64).reshape(-1, 5)
    g = np.array(gt, dtype=np.float64).reshape(-1, 4)
    return segment_average_precision(
        pred_video=p[:, 0].astype(int), pred_label=p[:, 1].astype(int), pred_segments=p[:, 2:4],
        pred_scores=p[:, 4], gt_video=g[:, 0].astype(int), gt_label=g[:, 1].astype(int),
        gt_segments=g[:, 2:4], num_classes=num_classes, tious=tious, zero_length=zero_length,
    )  # fmt: skip


def test_official_zero_length_rule_matches_a_point_anywhere_in_the_video() -> None:
    gt = [(0, 0, 5.0, 5.0), (0, 0, 10.0, 20.0)]
    pred = [(0, 0, 7.0, 7.0, 0.9), (0, 0, 10.0, 20.0, 0.8)]
    official = official_ap(pred, gt, 1, ACTIVITYNET_TIOUS)
    assert official[:, 0] == pytest.approx(np.ones(10))  # the point at 7 takes the one at 5
    assert ours(pred, gt, 1, ACTIVITYNET_TIOUS, "official") == pytest.approx(official)
    strict = ours(pred, gt, 1, ACTIVITYNET_TIOUS, "strict")
    assert strict[:, 0] == pytest.approx(np.full(10, 0.25))  # a miss, then a hit of 2 segments


@pytest.mark.parametrize("seed", range(6))
def test_official_zero_length_rule_equals_the_transcription(seed: int) -> None:
    """Random videos with zero-length segments among others (at most one zero-length ground
    truth per video and class: among several, the official tool takes the last in file order,
    ours the earliest start)."""
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for video in range(4):
        for label in range(2):
            starts = rng.uniform(0, 50, 3)
            gt += [(video, label, s, s + rng.uniform(1, 10)) for s in starts[:2]]
            gt.append((video, label, starts[2], starts[2]))
    for video, label, start, end in gt:
        for _ in range(2):
            jitter = rng.normal(0, 1, 2)
            point = rng.random() < 0.4
            s = start + jitter[0]
            pred.append((video, label, s, s if point else max(s, end + jitter[1]), rng.random()))
    official = official_ap(pred, gt, 2, ACTIVITYNET_TIOUS)
    assert ours(pred, gt, 2, ACTIVITYNET_TIOUS, "official") == pytest.approx(official, abs=1e-12)
    assert not np.allclose(ours(pred, gt, 2, ACTIVITYNET_TIOUS, "strict"), official)


def random_case(seed: int) -> tuple[list, list, int]:
    """Coarse grids make ties in score and tIoU, zero-length segments, duplicated rows."""
    rng = np.random.default_rng(seed)
    videos, classes = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    gt = []
    for _ in range(int(rng.integers(0, 25))):
        start = int(rng.integers(0, 8))
        gt.append(
            (
                int(rng.integers(videos)),
                int(rng.integers(classes)),
                start,
                start + int(rng.integers(0, 4)),
            )
        )
    gt += [gt[i] for i in rng.integers(0, len(gt), size=len(gt) // 4)] if gt else []
    pred = []
    for _ in range(int(rng.integers(0, 60))):
        start = int(rng.integers(0, 8))
        end = start + int(rng.integers(0, 4))
        score = float(rng.integers(0, 5)) / 4
        pred.append((int(rng.integers(videos)), int(rng.integers(classes)), start, end, score))
    pred += [pred[i] for i in rng.integers(0, len(pred), size=len(pred) // 4)] if pred else []
    return pred, gt, classes


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_equals_loop_on_random_inputs(seed: int) -> None:
    pred, gt, classes = random_case(seed)
    fast, loop = both(pred, gt, classes, (0.1, 1 / 3, 0.5, 2 / 3, 0.75, 1.0))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(loop))
    np.testing.assert_allclose(fast, loop, rtol=0, atol=1e-12)


def test_realistic_detections_equal_loop() -> None:
    from experiments.benchmarks.evaluation import activitynet_like

    p, g = activitynet_like(np.random.default_rng(3), videos=60, classes=20, per_video=50)
    pred = np.column_stack([p["video"], p["label"], p["segments"], p["scores"]]).tolist()
    gt = np.column_stack([g["video"], g["label"], g["segments"]]).tolist()
    fast, loop = both(pred, gt, 20, ACTIVITYNET_TIOUS)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(loop))
    np.testing.assert_allclose(fast, loop, rtol=0, atol=1e-12)
    assert 0.05 < np.nanmean(fast) < 0.95  # the case is neither trivial nor hopeless


@pytest.mark.parametrize(
    "problem",
    [
        {"pred_scores": np.array([np.nan])},
        {"pred_segments": np.array([[2.0, 1.0]])},
        {"pred_label": np.array([3])},
        {"tious": (0.0,)},
    ],
)
def test_invalid_inputs_are_errors(problem: dict) -> None:
    args = dict(
        pred_video=np.array([0]),
        pred_label=np.array([0]),
        pred_segments=np.array([[0.0, 1.0]]),
        pred_scores=np.array([1.0]),
        gt_video=np.array([0]),
        gt_label=np.array([0]),
        gt_segments=np.array([[0.0, 1.0]]),
        num_classes=3,
        tious=(0.5,),
    )
    with pytest.raises(ValueError):
        segment_average_precision(**{**args, **problem})


def test_metric_equals_function_and_counts_a_repeated_video_once() -> None:
    pred, gt, classes = random_case(7)
    videos = max([row[0] for row in pred + gt], default=0) + 1
    tious = (0.3, 0.5, 0.7)

    def per_video(rows, with_score):
        out = []
        for v in range(videos):
            mine = [r for r in rows if r[0] == v]
            item = {
                "segments": torch.tensor([r[2:4] for r in mine], dtype=torch.float64).reshape(
                    -1, 2
                ),
                "labels": torch.tensor([r[1] for r in mine], dtype=torch.int64),
            }
            if with_score:
                item["scores"] = torch.tensor([r[4] for r in mine], dtype=torch.float64)
            out.append(item)
        return out

    preds, targets = per_video(pred, True), per_video(gt, False)
    ids = [f"video_{v}" for v in range(videos)]
    metric = SegmentMAP(num_classes=classes, tious=tious)
    metric.update(preds[::-1], targets[::-1], ids[::-1])
    metric.update(preds[:1], targets[:1], ids[:1])  # padded duplicate
    result = metric.compute()

    # the function on the same rows, videos numbered as the metric orders them
    fast, _ = both(pred, gt, classes, tious)
    expected = summarize(fast, tious)
    for t in tious:
        assert result[f"mAP@{t:g}"].item() == pytest.approx(expected["mAP"][f"{t:g}"], abs=1e-12)
    assert result["average_mAP"].item() == pytest.approx(expected["average_mAP"], abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_input_order_does_not_matter(seed: int) -> None:
    pred, gt, classes = random_case(100 + seed)
    rng = np.random.default_rng(seed)
    shuffled_pred = [pred[i] for i in rng.permutation(len(pred))]
    shuffled_gt = [gt[i] for i in rng.permutation(len(gt))]
    tious = (0.2, 0.5, 0.8)
    np.testing.assert_array_equal(
        both(pred, gt, classes, tious)[0], both(shuffled_pred, shuffled_gt, classes, tious)[0]
    )
