"""Dense scores to segments, and (soft-)NMS, against plain loops written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.metrics.segment_map import temporal_iou as numpy_tiou
from lightning_modules.postprocessing import (
    Detections,
    dense_to_segments,
    nms,
    soft_nms,
)


def runs_by_loop(scores: np.ndarray, threshold: float) -> set[tuple]:
    """(class, first step, end step, mean score) of each run at or above the threshold."""
    runs = set()
    for k, row in enumerate(scores):
        t = 0
        while t < len(row):
            if row[t] >= threshold:
                first = t
                while t < len(row) and row[t] >= threshold:
                    t += 1
                runs.add((k, first, t, round(float(row[first:t].mean()), 9)))
            else:
                t += 1
    return runs


@pytest.mark.parametrize("seed", range(5))
def test_dense_to_segments_finds_every_run(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(4, 40))
    stride, offset = 0.5, 3.0
    found = dense_to_segments(torch.from_numpy(scores), 0.6, stride, offset)
    expected = runs_by_loop(scores, 0.6)
    assert len(expected) > 5
    got = set()
    for (start, end), score, label in zip(*found, strict=True):
        first, stop = (start.item() - offset) / stride, (end.item() - offset) / stride
        assert first == round(first) and stop == round(stop)
        got.add((label.item(), round(first), round(stop), round(score.item(), 9)))
    assert got == expected


def test_dense_to_segments_handles_runs_at_both_ends() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.0, 0.0, 0.0, 0.0]])
    segments, score, labels = dense_to_segments(scores, 0.5, stride=1.0)
    assert segments.tolist() == [[0.0, 2.0], [3.0, 4.0]]
    assert score.tolist() == pytest.approx([0.85, 0.7])
    assert labels.tolist() == [0, 0]


def random_detections(seed: int, n: int = 60) -> Detections:
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 50, n)
    segments = np.stack([start, start + rng.uniform(0, 10, n)], axis=1)
    segments[:3] = segments[3:6]  # duplicates
    return Detections(
        torch.from_numpy(segments),
        torch.from_numpy(rng.uniform(size=n)),
        torch.from_numpy(rng.integers(0, 3, n)),
    )


def greedy_by_loop(det: Detections, decay, min_score: float, limit: int) -> list[tuple]:
    """Textbook greedy suppression over a Python list."""
    items = [
        [s.tolist(), float(c), int(lab)]
        for s, c, lab in zip(det.segments, det.scores, det.labels, strict=True)
    ]
    kept = []
    while items and len(kept) < limit:
        best = max(range(len(items)), key=lambda i: (items[i][1], -i))
        segment, score, label = items.pop(best)
        kept.append((segment, score, label))
        rest = []
        for other in items:
            if other[2] == label:
                iou = float(numpy_tiou(np.array(segment), np.array(other[0])))
                other[1] = decay(iou, other[1])
            if other[1] >= min_score:
                rest.append(other)
        items = rest
    return kept


def as_list(det: Detections) -> list[tuple]:
    return [
        (s.tolist(), float(c), int(lab))
        for s, c, lab in zip(det.segments, det.scores, det.labels, strict=True)
    ]


@pytest.mark.parametrize("seed", range(4))
def test_nms_equals_loop(seed: int) -> None:
    det = random_detections(seed)
    expected = greedy_by_loop(det, lambda iou, s: -math.inf if iou > 0.4 else s, -1.0, 25)
    got = as_list(nms(det, iou_threshold=0.4, max_segments=25))
    assert got == expected
    assert len(as_list(nms(det, iou_threshold=0.4))) < len(det.scores)


@pytest.mark.parametrize("seed", range(4))
def test_soft_nms_equals_loop(seed: int) -> None:
    det = random_detections(seed)
    expected = greedy_by_loop(det, lambda iou, s: s * math.exp(-(iou**2) / 0.5), 0.05, 40)
    got = soft_nms(det, sigma=0.5, min_score=0.05, max_segments=40)
    assert [(s, lab) for s, _, lab in as_list(got)] == [(s, lab) for s, _, lab in expected]
    np.testing.assert_allclose(got.scores.numpy(), [c for _, c, _ in expected], rtol=1e-12)
    assert (got.scores[1:] <= got.scores[:-1]).all()
