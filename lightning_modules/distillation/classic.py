"""Classic distillation baselines, for every task where they make sense: logit KD (Hinton et
al. 2015), FitNet hints (Romero et al. 2015), attention transfer (Zagoruyko & Komodakis 2017)
and similarity-preserving KD (Tung & Mori 2019), each written for `(B, C, T)` video features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.distillation.base import (
    PairwiseObjective,
    logit_kd,
    logit_mask,
    masked_mse,
    mean_over_videos,
    paired_features,
    sigmoid_kd,
    softmax_kd,
)
from lightning_modules.models.layers import masked_mean
from lightning_modules.models.outputs import HEAD_TAP, ModelOutput


class LogitKD(PairwiseObjective):
    """Hinton et al., "Distilling the Knowledge in a Neural Network", 2015: match the teacher's
    softened predictions, scaled by T².

    `kind="softmax"`: KL between softmax distributions over classes, for single-label clip
    logits (or per valid step of single-label dense logits). `kind="sigmoid"`: per-class
    Bernoulli KL, for multi-label dense logits and per-point segment logits (METHODS.md:
    T = 4). Averaged over valid steps or points, and over heads for multi-head clip models.
    Reads `logits` (and `extras["point_mask"]` for segment heads).
    """

    def __init__(
        self,
        kind: Literal["softmax", "sigmoid"],
        temperature: float = 4.0,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        if kind not in ("softmax", "sigmoid"):
            raise ValueError(f"kind must be 'softmax' or 'sigmoid', got {kind!r}")
        self.kd = softmax_kd if kind == "softmax" else sigmoid_kd
        self.temperature = temperature

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        return logit_kd(
            student.logits, teacher.logits, logit_mask(student), self.kd, self.temperature
        )


class FitNet(PairwiseObjective):
    """Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015: a learned 1x1
    convolution maps the student's features to the teacher's width, then masked MSE.

    Args:
        student_channels: width of the student tensor read (`tap`).
        teacher_channels: teacher name -> width of its tensor; the keys are the teachers used,
            one adapter each (learnable: the DistillModule optimises them).
        tap: the representation read in both models: `head` (the head's last block, default),
            another tap, or `embeddings` (the head's input).
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: dict[str, int],
        tap: str = HEAD_TAP,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, list(teacher_channels))
        self.tap = tap
        self.adapters = nn.ModuleDict(
            {t: nn.Conv1d(student_channels, c, 1) for t, c in teacher_channels.items()}
        )

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        x, y, mask = paired_features(student, teacher, self.tap)
        return masked_mse(self.adapters[name](x), y, mask)


def temporal_attention(x: Tensor, mask: Tensor) -> Tensor:
    """Attention over time: per-step energy `mean_c h_t²`, zero at padded steps, L2-normalised
    over the video, `(B, T)`. Normalising makes it width- and scale-free."""
    energy = (x.masked_fill(~mask[:, None], 0.0) ** 2).mean(1)
    return F.normalize(energy, dim=-1)


class AttentionTransfer(PairwiseObjective):
    """Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017, over time: the
    student's normalised per-step energy map imitates the teacher's (squared L2 distance per
    video, averaged over videos). Parameter-free, so widths may differ. For several layers, add
    one objective per `tap`."""

    def __init__(
        self,
        tap: str = HEAD_TAP,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        self.tap = tap

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        x, y, mask = paired_features(student, teacher, self.tap)
        distance = ((temporal_attention(x, mask) - temporal_attention(y, mask)) ** 2).sum(-1)
        return mean_over_videos(distance, mask.any(-1))


def batch_similarity(x: Tensor, mask: Tensor) -> Tensor:
    """Row-normalised `(B, B)` Gram matrix of the samples' time-pooled features."""
    pooled = masked_mean(x.masked_fill(~mask[:, None], 0.0), mask)
    return F.normalize(pooled @ pooled.T, dim=1)


class SimilarityPreserving(PairwiseObjective):
    """Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019: samples that
    the teacher finds similar should be similar for the student. Features are mean-pooled over
    valid steps, the loss is `‖G_s − G_t‖_F² / B²` of the row-normalised batch Gram matrices.
    Parameter-free; needs batches of more than one sample to carry signal."""

    def __init__(
        self,
        tap: str = HEAD_TAP,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        self.tap = tap

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        x, y, mask = paired_features(student, teacher, self.tap)
        difference = batch_similarity(x, mask) - batch_similarity(y, mask)
        return (difference**2).sum() / x.shape[0] ** 2
