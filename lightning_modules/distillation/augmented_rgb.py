"""Augmented RGB (Dai, Das, Bremond, "Learning an Augmented RGB Representation with Cross-Modal
Knowledge Distillation for Action Detection", ICCV 2021): three KD terms on the snippet
features of a dense detector, from flow and pose teachers to the RGB student.

The paper names the terms (atomic, global, boundary); their exact forms are our choices, the
defaults of `../shared/METHODS.md`. Each reads the detection head's last temporal block (tap
`head`, what the paper distils, so that the KD gradient trains the head) or, with `tap`, another
named tensor (`embeddings` for the head's input), and respects the mask. Several teachers: the
term is averaged over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.distillation.base import (
    PairwiseObjective,
    mean_over_videos,
    paired_features,
)
from lightning_modules.models.outputs import HEAD_TAP, ModelOutput


def pool_windows(x: Tensor, mask: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Masked mean of `(B, C, T)` features over consecutive runs of `window` steps: the
    "segment" units of the atomic loss. A unit is valid when one of its steps is."""
    if window == 1:
        return x, mask
    pad = -x.shape[-1] % window
    x = F.pad(x.masked_fill(~mask[:, None], 0.0), (0, pad))
    counts = F.pad(mask, (0, pad)).float().unflatten(-1, (-1, window)).sum(-1)
    sums = x.unflatten(-1, (-1, window)).sum(-1)
    return sums / counts.clamp(min=1.0)[:, None], counts > 0


def projection(in_channels: int, out_channels: int) -> nn.Module:
    """The contrastive projection: two per-step (1x1 conv) layers with a ReLU between."""
    return nn.Sequential(
        nn.Linear(in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels)
    )


class AtomicContrastive(PairwiseObjective):
    """L_atomic: InfoNCE between projected student and teacher snippet embeddings.

    Each valid step (or `window`-step unit) of the student is an anchor; its positive is the
    teacher's embedding of the same video and step, its negatives the teacher's embeddings of
    every other valid step in the batch. Both sides go through their own projection to
    `projection_dim` and are L2-normalised; the similarity is divided by `temperature`.
    The projections are learnable (the DistillModule optimises them); one pair per teacher.

    Args:
        student_channels: width of the student tensor read (`tap`).
        teacher_channels: teacher name -> width of its tensor; the keys are the teachers used.
        projection_dim: output width of the projections (128 in METHODS.md).
        temperature: InfoNCE temperature τ.
        window: steps pooled into one unit (1 = snippets).
        tap: the representation read: `head` (the head's last block, default), another tap
            (`block1`, `level2`), or `embeddings` (the head's input).
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: dict[str, int],
        projection_dim: int = 128,
        temperature: float = 0.1,
        window: int = 1,
        tap: str = HEAD_TAP,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, list(teacher_channels))
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.temperature, self.window, self.tap = temperature, window, tap
        self.student_projections = nn.ModuleDict(
            {t: projection(student_channels, projection_dim) for t in teacher_channels}
        )
        self.teacher_projections = nn.ModuleDict(
            {t: projection(c, projection_dim) for t, c in teacher_channels.items()}
        )

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        x, y, mask = paired_features(student, teacher, self.tap)
        x, units = pool_windows(x, mask, self.window)
        y, _ = pool_windows(y, mask, self.window)
        s = F.normalize(self.student_projections[name](x.movedim(1, -1)[units]), dim=-1)
        t = F.normalize(self.teacher_projections[name](y.movedim(1, -1)[units]), dim=-1)
        if len(s) == 0:
            return s.sum() + t.sum()
        logits = s @ t.T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(s), device=logits.device))


def relation_matrix(x: Tensor, mask: Tensor, relation: Literal["time", "channel"]) -> Tensor:
    """Per video cosine relation of centred features: `(B, T, T)` between steps, or `(B, C, C)`
    between channels. Centring is over the video's valid steps; padded steps are zero."""
    keep = mask[:, None]
    x = x.masked_fill(~keep, 0.0)
    mean = x.sum(-1, keepdim=True) / mask.sum(-1).clamp(min=1)[:, None, None]
    x = (x - mean).masked_fill(~keep, 0.0)
    if relation == "time":
        x = F.normalize(x, dim=1)
        return x.transpose(1, 2) @ x
    x = F.normalize(x, dim=2)
    return x @ x.transpose(1, 2)


class GlobalRelation(PairwiseObjective):
    """L_global: the student's relation matrix of a video's embeddings imitates the teacher's.

    `relation="time"` (default) compares the `T × T` cosine similarities of the centred,
    L2-normalised step embeddings; `"channel"` the `C × C` correlations of the channels over
    time (student and teacher must then have the same width). Masked MSE over valid entries,
    averaged per video, then over videos, so long videos do not dominate quadratically.
    Nothing learnable: the relation compares structure, not feature spaces.
    """

    def __init__(
        self,
        relation: Literal["time", "channel"] = "time",
        tap: str = HEAD_TAP,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        if relation not in ("time", "channel"):
            raise ValueError(f"relation must be 'time' or 'channel', got {relation!r}")
        self.relation, self.tap = relation, tap

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        x, y, mask = paired_features(student, teacher, self.tap)
        if self.relation == "channel" and x.shape[1] != y.shape[1]:
            raise ValueError(
                f"channel relations need equal widths; student {x.shape[1]}, teacher "
                f"{name!r} {y.shape[1]}: use relation='time' or a tap of equal width"
            )
        error = relation_matrix(x, mask, self.relation) - relation_matrix(y, mask, self.relation)
        if self.relation == "time":
            entries = (mask[:, :, None] & mask[:, None, :]).float()
        else:
            entries = torch.ones_like(error) * mask.any(-1)[:, None, None]
        per_video = (error**2 * entries).sum((1, 2)) / entries.sum((1, 2)).clamp(min=1.0)
        return mean_over_videos(per_video, mask.any(-1))


def saliency_logits(x: Tensor, mask: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """`a_t / τ` with `a_t = mean_c |h_{t+1} − h_t|`, `(B, T − 1)`, and where it is defined
    (both steps valid)."""
    valid = mask[:, 1:] & mask[:, :-1]
    x = x.masked_fill(~mask[:, None], 0.0)
    change = (x[..., 1:] - x[..., :-1]).abs().mean(1)
    return (change / temperature).masked_fill(~valid, -1e9), valid


class BoundarySaliency(PairwiseObjective):
    """L_boundary: where the features change, the student's and the teacher's should agree.

    Saliency `a_t = mean_c |h_{t+1} − h_t|` on each valid pair of consecutive steps, turned
    into a distribution over time by a masked softmax with temperature `temperature` (τ_b);
    the loss is KL(teacher ‖ student) per video, averaged over videos: the student learns
    where the teacher sees boundaries (the softmax ignores a shift of all saliencies).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        tap: str = HEAD_TAP,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        self.temperature, self.tap = temperature, tap

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        x, y, mask = paired_features(student, teacher, self.tap)
        student_logits, valid = saliency_logits(x, mask, self.temperature)
        teacher_logits, _ = saliency_logits(y, mask, self.temperature)
        log_p_student = F.log_softmax(student_logits, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits, dim=-1)
        kl = torch.where(valid, log_p_teacher.exp() * (log_p_teacher - log_p_student), 0.0)
        return mean_over_videos(kl.sum(-1), valid.any(-1))
