"""Lee et al.'s losses: what each reads, against direct computations, and where its gradient
goes inside a DecomposedStudent (f_M only imitates, f_A only learns from labels)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from decomposed_builders import BRANCH, dense_student, inputs, segment_student
from distill_outputs import segment_output

from lightning_modules.distillation import (
    AppearanceTaskLoss,
    MotionFeatureImitation,
    MotionPredictionImitation,
)
from lightning_modules.models import ModelOutput
from lightning_modules.tasks import DenseTask, SegmentTask


def flow_teacher(out: ModelOutput, channels: int = BRANCH, seed: int = 1) -> ModelOutput:
    """A teacher output on the same grid and points as the student's motion branch."""
    generator = torch.Generator().manual_seed(seed)
    motion = out.extras["motion"]
    b, _, t = motion.embeddings.shape
    extras = dict(motion.extras)
    if "offsets" in extras:
        extras["offsets"] = torch.rand(extras["offsets"].shape, generator=generator) * 4
    return ModelOutput(
        embeddings=torch.randn(b, channels, t, generator=generator),
        logits=torch.randn(motion.logits.shape, generator=generator) * 3,
        mask=out.mask,
        extras=extras,
    )


def grads(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_feature_imitation_compares_f_m_with_the_teacher_embeddings() -> None:
    features, mask = inputs()
    out = dense_student()(features, mask)
    teacher = flow_teacher(out)
    objective = MotionFeatureImitation(BRANCH, {"flow": BRANCH})
    assert not list(objective.parameters())  # same width: no adapter
    loss = objective(out, {"flow": teacher}, {})
    f_m = out.extras["motion"].embeddings
    valid = mask[:, None].expand_as(f_m)
    assert loss.item() == pytest.approx(((f_m - teacher.embeddings) ** 2)[valid].mean().item())
    wider = MotionFeatureImitation(BRANCH, {"flow": 20})
    assert isinstance(wider.adapters["flow"], torch.nn.Conv1d)
    assert wider(out, {"flow": flow_teacher(out, channels=20)}, {}).item() > 0


def test_prediction_imitation_on_segments_is_kl_plus_confidence_weighted_l1() -> None:
    student = segment_output(0)
    teacher = replace(
        segment_output(1),
        extras={**segment_output(1).extras, "offsets": torch.rand(2, 2, 28) * 3},
    )
    loss = MotionPredictionImitation(source="main", regression_weight=0.5)(
        student, {"flow": teacher}, {}
    )
    valid = student.extras["point_mask"]
    s, t = student.logits.transpose(1, 2)[valid], teacher.logits.transpose(1, 2)[valid]
    p = torch.sigmoid(t)
    kl = F.binary_cross_entropy_with_logits(s, p, reduction="sum") - F.binary_cross_entropy(
        p, p, reduction="sum"
    )
    confidence = p.max(dim=1).values
    positives = max(int((confidence >= 0.5).sum()), 1)  # the teacher's positive points
    error = (student.extras["offsets"] - teacher.extras["offsets"]).abs().mean(1)[valid]
    expected = kl / positives + 0.5 * (confidence * error).sum() / confidence.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def _thumos_like(points: int, classes: int = 20, actions: int = 8) -> tuple[ModelOutput, ...]:
    """Student and teacher segment outputs: the teacher sure of one class at `actions` points,
    background elsewhere, where the student already agrees with it."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.full((1, classes, points), -8.0)
    teacher[0, 3, :actions] = 4.0
    student = teacher.clone()
    student[0, :, :actions] = torch.randn(classes, actions, generator=generator)
    student.requires_grad_(True)
    extras = {
        "point_mask": torch.ones(1, points, dtype=torch.bool),
        "offsets": torch.zeros(1, 2, points),
        "points": torch.zeros(points, 3),
    }
    mask = torch.ones(1, points, dtype=torch.bool)
    embeddings = torch.zeros(1, 4, points)
    return (
        ModelOutput(embeddings, student, mask, extras=extras),
        ModelOutput(embeddings, teacher, mask, extras=extras),
    )


def test_prediction_imitation_weighs_an_action_point_like_the_focal_task_loss() -> None:
    """L_pred is normalised by positives, as the task's focal loss: its gradient at an action
    point neither shrinks with the number of background points nor falls orders of magnitude
    below the task loss's (a mean over points x classes made it ~1,800x smaller)."""
    from lightning_modules.tasks.losses import sigmoid_focal_loss

    objective = MotionPredictionImitation(source="main", regression_weight=0.0)
    gradients = []
    for points in (100, 4000):  # a short window, and THUMOS14's ~2,300 steps x pyramid
        student, teacher = _thumos_like(points)
        objective(student, {"flow": teacher}, {}).backward()
        gradients.append(student.logits.grad[0, 3, 0].abs().item())
    assert gradients[1] == pytest.approx(gradients[0], rel=1e-6)
    student, _ = _thumos_like(4000)
    targets = torch.zeros(4000, 20)
    targets[:8, 3] = 1.0
    rows = student.logits[0].transpose(0, 1)
    (sigmoid_focal_loss(rows, targets).sum() / 8).backward()
    ratio = gradients[1] / student.logits.grad[0, 3, 0].abs().item()
    assert 0.05 < ratio < 50  # the same order; the focal loss damps by alpha and (1 - p_t)^2


def test_motion_source_needs_a_motion_branch() -> None:
    plain = segment_output(0)
    with pytest.raises(KeyError, match="source='main'"):
        MotionPredictionImitation()(plain, {"flow": segment_output(1)}, {})
    with pytest.raises(ValueError, match="source"):
        MotionPredictionImitation(source="appearance")


def test_appearance_loss_is_the_task_loss_on_the_appearance_branch() -> None:
    features, mask = inputs()
    out = segment_student()(features, mask)
    batch = {
        "targets": {"segments": [torch.tensor([[0.2, 0.8, 1.0]]), torch.tensor([[0.1, 0.5, 2.0]])]},
        "meta": {"stride": torch.tensor([0.1, 0.1])},
        "mask": mask,
    }
    task = SegmentTask(normaliser_momentum=0.0)
    loss = AppearanceTaskLoss(task)(out, {"flow": flow_teacher(out)}, batch)
    assert loss.item() == pytest.approx(task.loss(out.extras["appearance"], batch)["loss"].item())


@pytest.mark.parametrize("make", [dense_student, segment_student])
def test_imitation_trains_only_the_motion_branch(make) -> None:
    model = make()
    out = model(*inputs())
    teacher = flow_teacher(out)
    loss = MotionFeatureImitation(BRANCH, {"flow": BRANCH})(out, {"flow": teacher}, {})
    (loss + MotionPredictionImitation()(out, {"flow": teacher}, {})).backward()
    assert grads(model.motion) > 0 and grads(model.appearance) == 0


def test_labels_train_only_the_appearance_branch() -> None:
    model = dense_student()
    features, mask = inputs()
    batch = {"targets": {"frames": torch.rand(2, 14, 3) > 0.5}, "mask": mask}
    AppearanceTaskLoss(DenseTask())(model(features, mask), {}, batch).backward()
    assert grads(model.appearance) > 0 and grads(model.motion) == 0
