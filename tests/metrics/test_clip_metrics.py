"""Top-k accuracy against scikit-learn, EPIC action accuracy and ECE against direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score

from lightning_modules.metrics.accuracy import action_accuracy, topk_accuracy
from lightning_modules.metrics.calibration import expected_calibration_error
from lightning_modules.metrics.streaming import (
    EpicAccuracy,
    ExpectedCalibrationError,
    TopKAccuracy,
)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_topk_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(200, 12))
    labels = rng.integers(0, 12, 200)
    ours = topk_accuracy(scores, labels, (1, 3, 5))
    for k in (1, 3, 5):
        expected = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(12))
        assert ours[f"top{k}"] == pytest.approx(expected)


def test_ties_count_against_the_prediction() -> None:
    scores = np.zeros((4, 6))
    labels = np.array([0, 1, 2, 5])
    assert topk_accuracy(scores, labels, (1, 5, 6)) == {"top1": 0.0, "top5": 0.0, "top6": 1.0}


def test_action_is_verb_and_noun_both_right() -> None:
    rng = np.random.default_rng(1)
    verbs, nouns = rng.normal(size=(300, 7)), rng.normal(size=(300, 9))
    verb_labels, noun_labels = rng.integers(0, 7, 300), rng.integers(0, 9, 300)
    both = (verbs.argmax(1) == verb_labels) & (nouns.argmax(1) == noun_labels)
    assert 0 < both.mean() < 1
    assert action_accuracy(verbs, verb_labels, nouns, noun_labels) == pytest.approx(both.mean())

    metric = EpicAccuracy(num_verbs=7, num_nouns=9)
    ids = [f"clip{i}" for i in range(300)]
    tensors = [torch.from_numpy(a) for a in (verbs, nouns, verb_labels, noun_labels)]
    metric.update(*[t[:200] for t in tensors], ids[:200])
    metric.update(*[t[150:] for t in tensors], ids[150:])  # 50 clips seen twice
    result = metric.compute()
    assert result["action_top1"].item() == pytest.approx(both.mean())
    assert result["verb_top1"].item() == pytest.approx((verbs.argmax(1) == verb_labels).mean())
    noun_top5 = top_k_accuracy_score(noun_labels, nouns, k=5, labels=np.arange(9))
    assert result["noun_top5"].item() == pytest.approx(noun_top5)


def direct_ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for m in range(bins):
        low, high = m / bins, (m + 1) / bins
        inside = (confidence > low) & (confidence <= high)
        if m == 0:
            inside |= confidence == 0
        if inside.any():
            accuracy = (predicted[inside] == labels[inside]).mean()
            total += inside.mean() * abs(accuracy - confidence[inside].mean())
    return total


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_direct_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(scale=rng.uniform(0.5, 4), size=(500, 10)))
    labels = np.where(rng.uniform(size=500) < 0.6, probs.argmax(1), rng.integers(0, 10, 500))
    expected = direct_ece(probs, labels)
    assert expected > 0.01
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-12)

    metric = ExpectedCalibrationError(num_classes=10)
    ids = torch.arange(500)
    metric.update(torch.from_numpy(probs), torch.from_numpy(labels), ids)
    metric.update(torch.from_numpy(probs[:10]), torch.from_numpy(labels[:10]), ids[:10])
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)


def test_ece_rejects_logits() -> None:
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(np.array([[2.0, -1.0]]), np.array([0]))


def test_topk_metric_counts_each_clip_once() -> None:
    rng = np.random.default_rng(2)
    scores, labels = rng.normal(size=(64, 20)), rng.integers(0, 20, 64)
    metric = TopKAccuracy(num_classes=20, top_k=(1, 5))
    ids = [f"c{i}" for i in range(64)]
    metric.update(torch.from_numpy(scores[:40]), torch.from_numpy(labels[:40]), ids[:40])
    metric.update(torch.from_numpy(scores[30:]), torch.from_numpy(labels[30:]), ids[30:])
    result = metric.compute()
    for k in (1, 5):
        expected = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(20))
        assert result[f"top{k}"].item() == pytest.approx(expected)
