"""The losses of decomposed cross-modal distillation (Lee, Kim, Shim, Wee, Byun, CVPR 2023),
for `DecomposedStudent` (`lightning_modules/models/decomposed.py`).

`L = L_joint + L_app + L_feat + L_pred`: the joint detector's task loss is the DistillModule's
task loss on the main output; the appearance branch learns only from ground truth
(`AppearanceTaskLoss`); the motion branch only imitates the teacher, at the feature level
(`MotionFeatureImitation`) and the prediction level (`MotionPredictionImitation`).

With `source="main"` the two imitation losses read a plain one-branch student's main output
instead: the "conventional distillation" row of the paper's table (L_det + L_feat + L_pred).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_modules.distillation.base import (
    Objective,
    PairwiseObjective,
    bernoulli_kl,
    logit_mask,
    logit_rows,
    masked_mse,
)
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.tasks.base import Task

Source = Literal["motion", "main"]


def imitating_output(student: ModelOutput, source: Source) -> ModelOutput:
    """The output an imitation loss reads: the motion branch's, or the student's main one."""
    if source == "main":
        return student
    if "motion" not in student.extras:
        raise KeyError(
            "the student has no motion branch output (extras['motion']): use a "
            "DecomposedStudent with its branch detectors on, or source='main' for a "
            "one-branch student"
        )
    return student.extras["motion"]


def _check_source(source: str) -> None:
    if source not in ("motion", "main"):
        raise ValueError(f"source must be 'motion' or 'main', got {source!r}")


class MotionFeatureImitation(PairwiseObjective):
    """L_feat: masked MSE between `f_M` (the motion branch's features, the branch detector's
    input) and the teacher's detector-input features (`teacher.embeddings`).

    `f_M` is already a learned projection, so it is compared directly when the widths agree;
    a learnable 1x1 adapter is added only for a teacher of another width.

    Args:
        student_channels: width of `f_M` (or of the main output's embeddings).
        teacher_channels: teacher name -> width of its embeddings; the keys are the teachers.
        source: `motion` (the decomposed student's motion branch) or `main` (the
            conventional one-branch baseline).
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: dict[str, int],
        source: Source = "motion",
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, list(teacher_channels))
        _check_source(source)
        self.source = source
        self.adapters = nn.ModuleDict(
            {
                t: nn.Identity() if c == student_channels else nn.Conv1d(student_channels, c, 1)
                for t, c in teacher_channels.items()
            }
        )

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        source = imitating_output(student, self.source)
        x, y = source.embeddings.float(), teacher.embeddings.float()
        if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
            raise ValueError(f"student {tuple(x.shape)} and teacher {tuple(y.shape)} differ")
        return masked_mse(self.adapters[name](x), y, source.mask)


class MotionPredictionImitation(PairwiseObjective):
    """L_pred: the branch detector's predictions on `f_M` imitate the teacher detector's.

    Classification: BCE of the student's logits to the teacher's sigmoid scores, written as
    the Bernoulli KL (the BCE less the teacher's entropy: same gradient, zero at a match),
    normalised as the task loss it stands beside, so that its weight means what it says:
    for segment heads summed over points and classes and divided by the teacher's positives
    (points whose highest teacher score is at least 0.5, at least 1), as the focal loss is
    divided by the ground-truth positives; for dense heads summed over classes and averaged
    over valid steps, as `DenseTask`'s `pdan` BCE. (A mean over every point and class made
    its gradient at an action point about 1,800x smaller than the focal loss's at THUMOS14
    size.) Segment heads (`extras["offsets"]`) add
    `regression_weight` times an L1 between the two heads' offsets, each point weighted by
    the teacher's confidence (its highest class probability there): regression is imitated
    where the teacher sees an action. Dense heads have only the classification part.
    The student's and the teacher's heads must give the same points (same pyramid levels).

    Args:
        source: `motion` (the decomposed student's motion branch) or `main`.
        regression_weight: weight of the offset term relative to the classification term.
        teachers: the teachers imitated (averaged; default all).
    """

    def __init__(
        self,
        source: Source = "motion",
        regression_weight: float = 1.0,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        _check_source(source)
        self.source, self.regression_weight = source, regression_weight

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        source = imitating_output(student, self.source)
        valid = logit_mask(source)
        if source.logits.shape != teacher.logits.shape:
            raise ValueError(
                f"student logits {tuple(source.logits.shape)} and teacher logits "
                f"{tuple(teacher.logits.shape)} differ (same classes and points needed)"
            )
        student_rows = logit_rows(source.logits, valid)
        teacher_rows = logit_rows(teacher.logits, valid)
        kl = bernoulli_kl(student_rows, teacher_rows)
        confidence = torch.sigmoid(teacher_rows).amax(dim=1)
        if "offsets" not in source.extras:  # dense: per step summed over classes
            return kl.sum() / max(len(kl), 1)
        positives = (confidence >= 0.5).sum().clamp(min=1)
        loss = kl.sum() / positives
        offsets = logit_rows(source.extras["offsets"], valid)
        error = (offsets - logit_rows(teacher.extras["offsets"], valid)).abs().mean(dim=1)
        regression = (confidence * error).sum() / confidence.sum().clamp(min=1e-6)
        return loss + self.regression_weight * regression


class AppearanceTaskLoss(Objective):
    """L_app: the task's ground-truth loss on the appearance branch (`extras["appearance"]`),
    so that `f_A` learns only from labels. Reads no teacher.

    Args:
        task: the student's task (`DenseTask`, `SegmentTask`, ...), the same as the main loss.
    """

    def __init__(self, task: Task, weight: float = 1.0) -> None:
        super().__init__(weight, teachers=[])
        self.task = task

    def compute(
        self, student: ModelOutput, teachers: dict[str, ModelOutput], batch: Mapping[str, Any]
    ) -> Tensor:
        if "appearance" not in student.extras:
            raise KeyError("the student has no appearance branch output (extras['appearance'])")
        return self.task.loss(student.extras["appearance"], batch)["loss"]
