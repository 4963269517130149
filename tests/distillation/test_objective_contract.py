"""The contract every objective keeps (DESIGN.md): a float32 scalar, zero when the student
matches the teacher (where that holds), positive otherwise, gradients to the student only,
padding never counts, bf16 inputs are safe, several teachers are averaged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from distill_outputs import (
    clip_output,
    dense_output,
    grad_tensors,
    scramble_padding,
    segment_output,
    to_bf16,
)

from lightning_modules.distillation import (
    AtomicContrastive,
    AttentionTransfer,
    BoundarySaliency,
    EnsembleLogitKD,
    FitNet,
    GlobalRelation,
    LogitKD,
    MotionFeatureImitation,
    MotionPredictionImitation,
    SimilarityPreserving,
)
from lightning_modules.distillation.base import features


@dataclass
class Case:
    make: Callable[[int, dict[str, int]], torch.nn.Module]
    """(student width, {teacher: width}) -> objective; widths of the tensor it reads."""
    output: Callable[..., object]
    tap: str = "head"
    zero_when_equal: bool = True
    teacher_width: int = 12


CASES = {
    "atomic": Case(
        lambda s, t: AtomicContrastive(s, t, projection_dim=6), dense_output, zero_when_equal=False
    ),
    "atomic_window_tap": Case(
        lambda s, t: AtomicContrastive(s, t, projection_dim=6, window=3, tap="block1"),
        dense_output,
        tap="block1",
        zero_when_equal=False,
    ),
    "global_time": Case(lambda s, t: GlobalRelation(), dense_output),
    "global_channel": Case(lambda s, t: GlobalRelation("channel"), dense_output, teacher_width=8),
    "global_level_tap": Case(lambda s, t: GlobalRelation(tap="level1"), segment_output),
    "boundary": Case(lambda s, t: BoundarySaliency(), dense_output),
    "boundary_segments": Case(lambda s, t: BoundarySaliency(), segment_output),
    "logit_sigmoid_dense": Case(lambda s, t: LogitKD("sigmoid"), dense_output),
    "logit_sigmoid_segments": Case(lambda s, t: LogitKD("sigmoid"), segment_output),
    "logit_softmax_clips": Case(lambda s, t: LogitKD("softmax"), clip_output),
    "fitnet": Case(lambda s, t: FitNet(s, t), dense_output, zero_when_equal=False),
    "fitnet_level_tap": Case(
        lambda s, t: FitNet(s, t, tap="level2"),
        segment_output,
        tap="level2",
        zero_when_equal=False,
    ),
    "attention_transfer": Case(lambda s, t: AttentionTransfer(), dense_output),
    "attention_transfer_tap": Case(lambda s, t: AttentionTransfer(tap="block0"), dense_output),
    "similarity": Case(lambda s, t: SimilarityPreserving(), dense_output),
    "similarity_pooled": Case(lambda s, t: SimilarityPreserving(tap="pooled"), clip_output),
    "ensemble_uniform": Case(lambda s, t: EnsembleLogitKD(), clip_output),
    "ensemble_per_sample": Case(lambda s, t: EnsembleLogitKD("per_sample"), clip_output),
    "ensemble_held_out": Case(
        lambda s, t: EnsembleLogitKD("held_out", {n: i + 1.0 for i, n in enumerate(t)}),
        clip_output,
    ),
    "motion_feature_main": Case(
        lambda s, t: MotionFeatureImitation(s, t, source="main"),
        dense_output,
        tap="embeddings",
        teacher_width=8,
    ),
    "motion_feature_adapter": Case(
        lambda s, t: MotionFeatureImitation(s, t, source="main"),
        dense_output,
        tap="embeddings",
        zero_when_equal=False,
    ),
    "motion_prediction_dense": Case(
        lambda s, t: MotionPredictionImitation(source="main"), dense_output
    ),
    "motion_prediction_segments": Case(
        lambda s, t: MotionPredictionImitation(source="main"), segment_output
    ),
}


def batch_for(output) -> dict:
    """Clip labels for the per-sample weighting (other objectives read no batch key)."""
    generator = torch.Generator().manual_seed(7)
    labels = {
        "verb": torch.randint(0, 5, (4,), generator=generator),
        "noun": torch.randint(0, 4, (4,), generator=generator),
    }
    return {"targets": {"clip": labels}, "mask": output.mask}


def width(output, tap: str) -> int:
    return features(output, tap)[0].shape[1]


def build(case: Case, student, teachers: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return case.make(width(student, case.tap), {n: width(t, case.tap) for n, t in teachers.items()})


def pair(case: Case):
    """A student (width 8) and a different teacher (`teacher_width`) of the case's layout."""
    return case.output(0), case.output(1, channels=case.teacher_width)


@pytest.mark.parametrize("name", list(CASES))
def test_zero_when_equal_else_positive(name: str) -> None:
    case = CASES[name]
    student, teacher = pair(case)
    batch = batch_for(student)
    objective = build(case, student, {"flow": teacher})
    loss = objective(student, {"flow": teacher}, batch)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert loss.item() > 1e-4
    same = build(case, student, {"flow": student})(student, {"flow": student}, batch)
    if case.zero_when_equal:
        assert same.item() == pytest.approx(0.0, abs=1e-5)
    else:
        assert torch.isfinite(same)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_the_student_never_the_teacher(name: str) -> None:
    case = CASES[name]
    student, teacher = pair(case)
    objective = build(case, student, {"flow": teacher})
    objective(student, {"flow": teacher}, batch_for(student)).backward()
    grads = [x.grad for x in grad_tensors(student) if x.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(x.grad is None for x in grad_tensors(teacher))
    assert all(p.grad is not None for p in objective.parameters())  # adapters, projections


@pytest.mark.parametrize("name", list(CASES))
def test_padding_does_not_change_the_value(name: str) -> None:
    case = CASES[name]
    student, teacher = pair(case)
    objective = build(case, student, {"flow": teacher})
    batch = batch_for(student)
    loss = objective(student, {"flow": teacher}, batch)
    scrambled = objective(
        scramble_padding(student), {"flow": scramble_padding(teacher, seed=5)}, batch
    )
    assert scrambled.item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_autocast_inputs_give_a_finite_fp32_loss(name: str) -> None:
    case = CASES[name]
    student, teacher = pair(case)
    objective = build(case, student, {"flow": teacher})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = objective(to_bf16(student), {"flow": to_bf16(teacher)}, batch_for(student))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("ensemble")])
def test_several_teachers_are_averaged(name: str) -> None:
    case = CASES[name]
    student, flow = pair(case)
    pose = case.output(2, channels=case.teacher_width)
    batch = batch_for(student)
    both = build(case, student, {"flow": flow, "pose": pose})
    loss = both(student, {"flow": flow, "pose": pose}, batch)
    singles = []
    for name_, teacher in (("flow", flow), ("pose", pose)):
        single = build(case, student, {name_: teacher})
        single.load_state_dict(both.state_dict(), strict=False)
        singles.append(single(student, {name_: teacher}, batch))
    assert loss.item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-5)


def test_a_teacher_list_selects_and_a_missing_teacher_is_an_error() -> None:
    student, flow, pose = dense_output(0), dense_output(1), dense_output(2)
    only_pose = GlobalRelation(teachers=["pose"])
    assert only_pose(student, {"flow": flow, "pose": pose}, {}).item() == pytest.approx(
        GlobalRelation()(student, {"pose": pose}, {}).item()
    )
    with pytest.raises(KeyError, match="pose"):
        only_pose(student, {"flow": flow}, {})
    with pytest.raises(ValueError, match="at least one teacher"):
        GlobalRelation()(student, {}, {})
