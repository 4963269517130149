"""FrameMAP against scikit-learn's average precision."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from lightning_modules.metrics.frame_map import average_precision, frame_map
from lightning_modules.metrics.streaming import FrameMAP


def sklearn_means(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float, np.ndarray]:
    present = targets.any(axis=0)
    ap = np.array(
        [average_precision_score(targets[:, k], scores[:, k]) for k in np.flatnonzero(present)]
    )
    return float(ap.mean()), float(ap.sum() / targets.shape[1]), ap


@pytest.mark.parametrize("seed", range(8))
def test_matches_sklearn_with_ties_and_empty_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames, classes = int(rng.integers(5, 300)), int(rng.integers(2, 12))
    scores = np.round(rng.uniform(size=(frames, classes)), int(rng.integers(1, 4)))  # ties
    targets = rng.uniform(size=(frames, classes)) < rng.uniform(0.05, 0.5, classes)
    targets[:, rng.integers(classes)] = False  # a class without positives
    mean_present, mean_all, ap = sklearn_means(scores, targets)

    ours = average_precision(scores, targets)
    assert np.isnan(ours[~targets.any(axis=0)]).all()
    np.testing.assert_allclose(ours[targets.any(axis=0)], ap, rtol=0, atol=1e-12)
    result = frame_map(scores, targets)
    assert result["frame_mAP"] == pytest.approx(mean_present, abs=1e-12)
    assert result["frame_mAP_all"] == pytest.approx(mean_all, abs=1e-12)
    assert result["frame_mAP_all"] < result["frame_mAP"]


def test_metric_pools_valid_steps_of_all_videos() -> None:
    rng = np.random.default_rng(0)
    batches, pooled_scores, pooled_targets = [], [], []
    metric = FrameMAP(num_classes=5)
    for b in range(3):
        scores = torch.rand(4, 5, 20)
        targets = torch.rand(4, 5, 20) < 0.2
        lengths = torch.from_numpy(rng.integers(1, 21, size=4))
        mask = torch.arange(20)[None] < lengths[:, None]
        scores[~mask[:, None].expand_as(scores)] = 1.0  # padding: top scores, all positive
        targets[~mask[:, None].expand_as(targets)] = True
        ids = [f"b{b}_v{i}" for i in range(4)]
        metric.update(scores, targets, mask, ids)
        batches.append((scores, targets, mask, ids))
        for i in range(4):
            pooled_scores.append(scores[i, :, : lengths[i]].T.numpy())
            pooled_targets.append(targets[i, :, : lengths[i]].T.numpy())
    # a duplicate of one video, as a DistributedSampler pads
    scores, targets, mask, ids = batches[1]
    metric.update(scores[2:3], targets[2:3], mask[2:3], ids[2:3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mean_present, mean_all, _ = sklearn_means(
            np.concatenate(pooled_scores), np.concatenate(pooled_targets)
        )
    result = metric.compute()
    assert result["frame_mAP"].item() == pytest.approx(mean_present, abs=1e-12)
    assert result["frame_mAP_all"].item() == pytest.approx(mean_all, abs=1e-12)


def test_rejects_nan_scores() -> None:
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([[np.nan], [0.5]]), np.array([[1], [0]]))
