"""Expected calibration error (Guo et al., 2017), 15 equal-width confidence bins.

Confidence is the largest probability; a clip is right when its true class is the top-1 by the
rule of `accuracy.py` (ties count as wrong). Bin m holds confidences in ((m-1)/M, m/M], the
first also 0. ECE = sum over bins of |bin| / N * |accuracy(bin) - mean confidence(bin)|.
"""

from __future__ import annotations

import numpy as np

from lightning_modules.metrics.accuracy import label_rank


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of `(N, K)` class probabilities against `(N,)` labels."""
    probs = np.asarray(probs, dtype=np.float64)
    right = label_rank(probs, labels) == 0
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative rows summing to 1 (softmax logits)")
    confidence = probs.max(axis=1)
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bin_index, weights=right - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(probs)) if len(probs) else float("nan")
