"""Top-kx recall and AR@AN against transcriptions of the tools that define them (OpenTAD's
`compute_topkx_recall_detection`, the ActivityNet proposal evaluator's
`average_recall_vs_avg_nr_proposals`), on hand-worked cases, random inputs with zero-length and
inverted segments, and through `crossdistill evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightning_modules.commands.evaluate import main
from lightning_modules.metrics.segment_map import ACTIVITYNET_TIOUS
from lightning_modules.metrics.segment_recall import (
    area_under_curve,
    average_recall_curve,
    topkx_recall,
)


def _tiou(pred: tuple[float, float], gt: tuple[float, float], zero_union: float) -> float:
    """Intersection clipped at 0 over the sum of lengths minus it; `zero_union` where that is 0
    (OpenTAD divides by max(union, 1e-8): 0; the proposal evaluator by the union: NaN)."""
    inter = max(0.0, min(pred[1], gt[1]) - max(pred[0], gt[0]))
    union = (pred[1] - pred[0]) + (gt[1] - gt[0]) - inter
    if union == 0:
        return zero_union
    return inter / max(union, 1e-8)


def opentad_topkx_recall(predictions: list[tuple], truth: list[tuple], tious, top_k) -> np.ndarray:
    """The rule of OpenTAD's recall, written out: per class with ground truth and per video with
    n of its segments, the predictions of that class and video by descending score, the first
    k * n of them; a segment counts when one of them reaches the threshold; recall over the
    class's segments; `(len(tious), len(top_k))` mean over classes."""
    per_class = []
    for label in sorted({g[1] for g in truth}):
        gts = [g for g in truth if g[1] == label]
        found = np.zeros((len(tious), len(top_k)))
        for video in sorted({g[0] for g in gts}):
            segs = [(g[2], g[3]) for g in gts if g[0] == video]
            preds = [p for p in predictions if p[0] == video and p[1] == label]
            preds.sort(key=lambda p: -p[4])
            for t, threshold in enumerate(tious):
                for j, k in enumerate(top_k):
                    best = preds[: k * len(segs)]
                    found[t, j] += sum(
                        any(_tiou((p[2], p[3]), g, 0.0) >= threshold for p in best) for g in segs
                    )
        per_class.append(found / len(gts))
    return np.mean(per_class, axis=0)


def official_ar_an(
    proposals: list[tuple], truth: list[tuple], tious, max_avg: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ActivityNet proposal evaluator's sampling, written out: `(recall (T, 100),
    proposals per video (100,))` for proposals (video, start, end, score) and segments
    (video, start, end)."""
    videos = sorted({g[0] for g in truth})
    ratio = max_avg * float(len(videos)) / len(proposals)
    kept_lists, total = [], 0
    for video in videos:
        mine = sorted((p for p in proposals if p[0] == video), key=lambda p: -p[3])
        if not mine:
            kept_lists.append(None)
            continue
        n = min(int(len(mine) * ratio), len(mine))
        total += n
        kept_lists.append(mine[:n])
    fractions = np.arange(1, 101) / 100.0 * (max_avg * float(len(videos)) / total)
    recall = np.zeros((len(tious), 100))
    positives = len(truth)
    for t, threshold in enumerate(tious):
        matches = np.zeros(100)
        for video, kept in zip(videos, kept_lists, strict=True):
            segs = [(g[1], g[2]) for g in truth if g[0] == video]
            width = 1 if kept is None else len(kept)
            for j, fraction in enumerate(fractions):
                count = min(int(width * fraction), width)
                chosen = [] if kept is None else kept[:count]
                matches[j] += sum(
                    any(_tiou((p[1], p[2]), g, np.nan) >= threshold for p in chosen) for g in segs
                )
        recall[t] = matches / positives
    return recall, fractions * (float(total) / len(videos))


def _topkx(predictions, truth, tious, top_k, num_classes, zero_length="no_match") -> np.ndarray:
    p = np.array(predictions, dtype=np.float64).reshape(-1, 5)
    g = np.array(truth, dtype=np.float64).reshape(-1, 4)
    recall = topkx_recall(
        pred_video=p[:, 0].astype(int),
        pred_label=p[:, 1].astype(int),
        pred_segments=p[:, 2:4],
        pred_scores=p[:, 4],
        gt_video=g[:, 0].astype(int),
        gt_label=g[:, 1].astype(int),
        gt_segments=g[:, 2:4],
        num_classes=num_classes,
        tious=tious,
        top_k=top_k,
        zero_length=zero_length,
    )
    return np.nanmean(recall, axis=2)


def test_topkx_recall_hand_worked() -> None:
    truth = [(0, 0, 0, 10), (0, 0, 20, 30), (1, 1, 0, 5)]
    predictions = [
        (0, 0, 21, 31, 0.9),  # tIoU 9/11 with the second segment
        (0, 0, 50, 60, 0.8),  # nothing
        (0, 0, 0, 10, 0.7),  # the first exactly, but third in its video: outside the top 1x (2)
        (1, 1, 0, 4, 0.6),  # tIoU 0.8
        (2, 1, 0, 5, 0.99),  # a video without ground truth: changes nothing
    ]
    recall = _topkx(predictions, truth, (0.5, 0.85), (1, 5), 2)
    # class 0: 1x recalls 1 of 2 at 0.5, 0 at 0.85; 5x both at 0.5, 1 at 0.85; class 1: 1 at
    # 0.5, 0 at 0.85
    assert recall[0] == pytest.approx([(0.5 + 1) / 2, (1 + 1) / 2])
    assert recall[1] == pytest.approx([0, 0.5 / 2])
    reference = opentad_topkx_recall(predictions, truth, (0.5, 0.85), (1, 5))
    assert recall == pytest.approx(reference, abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_topkx_recall_equals_the_transcription_on_random_inputs(seed: int) -> None:
    """Integer bounds (tIoU ties at thresholds, duplicates, zero-length and inverted segments),
    distinct scores (the transcription's sort then has one order)."""
    rng = np.random.default_rng(seed)
    truth = []
    for _ in range(25):
        start = int(rng.integers(0, 20))
        truth.append(
            (
                int(rng.integers(0, 4)),
                int(rng.integers(0, 3)),
                start,
                start + int(rng.integers(0, 6)),
            )
        )
    scores = rng.permutation(200) / 200 + 0.001
    predictions = []
    for i in range(200):
        start = int(rng.integers(0, 22))
        end = start + int(rng.integers(-1, 7))  # some inverted
        predictions.append(
            (int(rng.integers(0, 5)), int(rng.integers(0, 3)), start, end, scores[i])
        )
    tious = (0.3, 0.5, 0.6000000000000001, 0.75)
    recall = _topkx(predictions, truth, tious, (1, 2, 5), 3)
    reference = opentad_topkx_recall(predictions, truth, tious, (1, 2, 5))
    assert recall == pytest.approx(reference, abs=1e-12)
    assert 0 < recall[0, 0] and recall[:, 0].max() < 1


def test_topkx_recall_zero_length_and_ties() -> None:
    """Strict recalls a zero-length segment with the same one, no_match never; tied scores keep
    the earlier start."""
    truth = [(0, 0, 5, 5)]
    predictions = [(0, 0, 5, 5, 0.5)]
    assert _topkx(predictions, truth, (0.5,), (1,), 1, "strict")[0, 0] == 1.0
    assert _topkx(predictions, truth, (0.5,), (1,), 1, "no_match")[0, 0] == 0.0
    truth = [(0, 0, 10, 20)]
    tied = [(0, 0, 10, 20, 0.5), (0, 0, 0, 5, 0.5)]  # the earlier start, a miss, ranks first
    assert _topkx(tied, truth, (0.5,), (1, 2), 1)[0].tolist() == [0.0, 1.0]


def _curve(proposals, truth, tious, max_avg, zero_length="no_match"):
    p = np.array(proposals, dtype=np.float64).reshape(-1, 4)
    g = np.array(truth, dtype=np.float64).reshape(-1, 3)
    return average_recall_curve(
        pred_video=p[:, 0].astype(int),
        pred_segments=p[:, 1:3],
        pred_scores=p[:, 3],
        gt_video=g[:, 0].astype(int),
        gt_segments=g[:, 1:3],
        tious=tious,
        max_average_proposals=max_avg,
        zero_length=zero_length,
    )


@pytest.mark.parametrize(("seed", "max_avg"), [(0, 100), (1, 7), (2, 3.5), (3, 20), (4, 5)])
def test_ar_an_equals_the_transcription_on_random_inputs(seed: int, max_avg: float) -> None:
    """Videos with many, few and no proposals, proposals of a video without ground truth,
    zero-length and inverted segments; distinct scores."""
    rng = np.random.default_rng(seed)
    truth = []
    for video in range(6):
        for _ in range(int(rng.integers(1, 4))):
            start = int(rng.integers(0, 30))
            truth.append((video, start, start + int(rng.integers(0, 8))))
    counts = [0, 1, 4, 9, 15, 30, 6]  # video 0 none; video 6 has no ground truth
    scores = iter(rng.permutation(sum(counts)) / sum(counts) + 0.001)
    proposals = []
    for video, count in enumerate(counts):
        for _ in range(count):
            start = int(rng.integers(0, 32))
            proposals.append((video, start, start + int(rng.integers(-1, 9)), next(scores)))
    tious = ACTIVITYNET_TIOUS
    recall, per_video = _curve(proposals, truth, tious, max_avg)
    reference, reference_per_video = official_ar_an(proposals, truth, tious, max_avg)
    assert per_video == pytest.approx(reference_per_video, abs=1e-12)
    assert recall == pytest.approx(reference, abs=1e-15)
    assert recall[0, -1] > 0
    auc = area_under_curve(recall.mean(0), per_video)
    assert auc == pytest.approx(
        np.trapezoid(reference.mean(0), reference_per_video) / reference_per_video[-1]
    )


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def run(argv: list[str], capsys) -> tuple[int, dict | None, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 else None, err


def test_evaluate_proposals_and_recall_through_the_cli(tmp_path: Path, capsys) -> None:
    """`evaluate proposals` equals the transcription on a file of labelled and unlabelled
    proposals; an unknown video is refused by default and scored under --official (counted in
    the ratio); `evaluate segments` reports the top-kx recall of --top-k."""
    database = {
        "a": {"subset": "validation", "duration": 60.0, "annotations": [
            {"segment": [5, 15], "label": "jump"}, {"segment": [30, 42], "label": "run"}]},
        "b": {"subset": "validation", "duration": 50.0, "annotations": [
            {"segment": [0, 8], "label": "jump"}]},
        "c": {"subset": "validation", "duration": 50.0, "annotations": []},
    }  # fmt: skip
    gt = write_json(tmp_path / "gt.json", {"database": database})
    rows = [
        ("a", 5, 14, 0.9), ("a", 31, 40, 0.8), ("a", 0, 60, 0.7), ("b", 1, 8, 0.95),
        ("b", 20, 30, 0.6), ("b", 0, 7, 0.5), ("c", 3, 9, 0.4),
    ]  # fmt: skip
    results: dict[str, list] = {}
    for i, (video, start, end, score) in enumerate(rows):
        entry = {"score": score, "segment": [start, end]}
        results.setdefault(video, []).append({**entry, "label": "jump"} if i % 2 else entry)
    pred = write_json(tmp_path / "proposals.json", {"results": results})
    argv = ["proposals", "--ground-truth", str(gt), "--predictions", str(pred)]
    status, result, err = run([*argv, "--max-proposals", "2"], capsys)
    assert status == 0, err
    truth = [("a", 5, 15), ("a", 30, 42), ("b", 0, 8)]
    reference, per_video = official_ar_an(rows, truth, ACTIVITYNET_TIOUS, 2)
    curve = result["curve"]
    assert curve["average_recall"] == pytest.approx(reference.mean(0).tolist(), abs=1e-15)
    assert curve["average_proposals"] == pytest.approx(per_video.tolist())
    assert result["AR@AN"]["2"] == pytest.approx(reference.mean(0)[-1])
    assert set(result["AR@AN"]) == {"0.02", "0.1", "0.2", "1", "2"}
    # 2 a video on average over a and b: 7 proposals, so each keeps int(n * 4 / 7) = 1
    assert result["recall_at_max"]["0.5"] == pytest.approx(reference[0, -1]) == pytest.approx(2 / 3)

    results["zz"] = [{"score": 0.99, "segment": [0, 5]}]
    write_json(pred, {"results": results})
    status, _, err = run([*argv, "--max-proposals", "2"], capsys)
    assert status == 1 and "video 'zz' is not in" in err
    status, official, err = run([*argv, "--max-proposals", "2", "--official"], capsys)
    assert status == 0, err
    reference, _ = official_ar_an([*rows, ("zz", 0, 5, 0.99)], truth, ACTIVITYNET_TIOUS, 2)
    assert official["curve"]["average_recall"] == pytest.approx(reference.mean(0).tolist())
    assert official["conventions"] == "official"

    detections = {"results": {v: [{**p, "label": "jump"} for p in r] for v, r in results.items()}}
    detections["results"].pop("zz")
    write_json(pred, detections)
    status, segments, err = run(
        ["segments", "--ground-truth", str(gt), "--predictions", str(pred), "--top-k", "1", "3"],
        capsys,
    )
    assert status == 0, err
    labelled = [(v, 0, s, e, sc) for v, s, e, sc in rows]
    jump = [(v, 0, s, e) for v, s, e in truth if (v, s) != ("a", 30)]
    expected = opentad_topkx_recall(labelled, jump, ACTIVITYNET_TIOUS, (1, 3))
    # classes jump (recalled as computed) and run (no prediction: 0), averaged
    assert segments["recall"]["1x"]["0.5"] == pytest.approx(expected[0, 0] / 2)
    assert segments["recall"]["3x"]["average"] == pytest.approx(expected[:, 1].mean() / 2)
