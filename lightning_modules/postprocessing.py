"""From model outputs to scored segments: dense scores to segments, and (soft-)NMS.

Times are in seconds on the sample's grid: step i covers `[offset + i * stride,
offset + (i + 1) * stride)`. Everything works on one video's tensors, on any device, with
tensor operations over all classes and candidates at once. The one Python loop, the greedy
selection of NMS (one iteration per kept segment), runs in NumPy on the CPU, as ActionFormer
runs it in a CPU extension: a few hundred iterations of small tensor operations cost 5-10x
more in torch's per-call overhead than the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lightning_modules.metrics.segment_map import temporal_iou


class Detections(NamedTuple):
    """Scored, labelled segments of one video."""

    segments: Tensor  # (N, 2) start, end in seconds
    scores: Tensor  # (N,)
    labels: Tensor  # (N,) int64


def dense_to_segments(
    scores: Tensor, threshold: float, stride: float, offset: float = 0.0
) -> Detections:
    """Each maximal run of steps where a class scores at least `threshold` becomes a segment.

    `scores` is `(K, T)` (per-step class probabilities of a dense head). A segment spans its
    steps and is scored by their mean, so long confident runs beat single spikes. Segments come
    ordered by class, then start.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (K, T), got {tuple(scores.shape)}")
    above = scores >= threshold
    edge = torch.zeros(scores.shape[0], 1, dtype=torch.bool, device=scores.device)
    change = torch.diff(torch.cat([edge, above, edge], dim=1).to(torch.int8), dim=1)
    label, start = torch.nonzero(change == 1, as_tuple=True)
    _, stop = torch.nonzero(change == -1, as_tuple=True)  # same (class, time) order as starts
    zero = torch.zeros(scores.shape[0], 1, dtype=scores.dtype, device=scores.device)
    cumulative = torch.cat([zero, torch.cumsum(scores, dim=1)], dim=1)
    mean = (cumulative[label, stop] - cumulative[label, start]) / (stop - start)
    segments = offset + stride * torch.stack([start, stop], dim=1).to(scores.dtype)
    return Detections(segments, mean, label)


def nms(
    detections: Detections, iou_threshold: float, max_segments: int | None = None
) -> Detections:
    """Greedy NMS per class: keep the best segment, drop same-class ones with tIoU above the
    threshold, repeat."""

    def suppress(iou: np.ndarray, scores: np.ndarray, rival: np.ndarray) -> Suppressed:
        return scores, ~(rival & (iou > iou_threshold))

    return _greedy(detections, suppress, max_segments)


def soft_nms(
    detections: Detections, sigma: float, min_score: float, max_segments: int | None = None
) -> Detections:
    """Gaussian soft-NMS per class (Bodla et al., 2017), as ActionFormer uses: keep the best
    segment, decay same-class scores by exp(-tIoU^2 / sigma), drop those below `min_score`,
    repeat. Kept segments carry their decayed scores."""

    def suppress(iou: np.ndarray, scores: np.ndarray, rival: np.ndarray) -> Suppressed:
        decayed = np.where(rival, scores * np.exp(-(iou**2) / sigma), scores)
        return decayed, decayed >= min_score

    return _greedy(detections, suppress, max_segments)


Suppressed = tuple[np.ndarray, np.ndarray]
Suppress = Callable[[np.ndarray, np.ndarray, np.ndarray], Suppressed]


def _greedy(detections: Detections, suppress: Suppress, max_segments: int | None) -> Detections:
    """Select the best remaining segment until none is left or `max_segments` are kept;
    `suppress(iou, scores, rival)` gives the new scores and which candidates stay alive."""
    segments, scores, labels = detections
    boxes = segments.detach().cpu().double().numpy()
    current = scores.detach().cpu().double().numpy().copy()
    classes = labels.detach().cpu().numpy()
    alive = np.ones(len(current), dtype=bool)
    limit = len(current) if max_segments is None else min(max_segments, len(current))
    kept: list[int] = []
    kept_scores: list[float] = []
    while len(kept) < limit and alive.any():
        best = int(np.argmax(np.where(alive, current, -np.inf)))
        kept.append(best)
        kept_scores.append(current[best])
        alive[best] = False
        rival = alive & (classes == classes[best])
        current, stays = suppress(temporal_iou(boxes[best], boxes), current, rival)
        alive &= stays
    index = torch.as_tensor(kept, dtype=torch.long, device=scores.device)
    return Detections(
        segments[index],
        torch.as_tensor(kept_scores, dtype=scores.dtype, device=scores.device),
        labels[index],
    )
