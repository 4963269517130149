"""Loss functions of the tasks, written against their papers' definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_bce(logits: Tensor, targets: Tensor, mask: Tensor, sum_classes: bool = True) -> Tensor:
    """Binary cross-entropy of `(B, K, T)` logits over the valid steps: summed over classes and
    averaged over valid steps (PDAN's normalisation), or with `sum_classes=False` averaged over
    classes too."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    weight = mask[:, None].float().expand_as(loss)
    total = (loss * weight).sum() / mask.float().sum().clamp(min=1.0)
    return total if sum_classes else total / loss.shape[1]


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Element-wise focal loss (Lin et al., ICCV 2017) on sigmoid probabilities.

    `-alpha_t (1 - p_t)^gamma log(p_t)`, with `p_t` the probability of the true label and
    `alpha_t = alpha` for positives, `1 - alpha` for negatives; it down-weights the many easy
    background points of a dense detector.
    """
    logits, targets = logits.float(), targets.float()
    probability = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * cross_entropy


def diou_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """1-D distance-IoU loss (Zheng et al., AAAI 2020) of segments given as distances from a point.

    `pred` and `target` are `(N, 2)` non-negative distances (to the start, to the end) from the
    same point. Loss = 1 - IoU + (centre distance / enclosing length)^2, per segment `(N,)`:
    the centre term still pulls disjoint or degenerate segments together where IoU is flat.
    """
    pred, target = pred.float(), target.float()
    p_start, p_end = pred.unbind(-1)
    t_start, t_end = target.unbind(-1)
    intersection = torch.minimum(p_start, t_start) + torch.minimum(p_end, t_end)
    union = (p_start + p_end) + (t_start + t_end) - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(p_start, t_start) + torch.maximum(p_end, t_end)
    centre_distance = (p_end - p_start) / 2 - (t_end - t_start) / 2
    return 1 - iou + (centre_distance / enclosing.clamp(min=eps)) ** 2
