"""Lee et al.'s DecomposedStudent: layouts, the shared branch detector, the fusions and their
ablations, the stop-gradient switches, the inference path, and that it learns."""

from __future__ import annotations

import pytest
import torch
from decomposed_builders import BRANCH, FUSED, K, dense_student, inputs, segment_student

from lightning_modules.distillation import (
    AppearanceTaskLoss,
    MotionFeatureImitation,
    MotionPredictionImitation,
)
from lightning_modules.models import (
    PDAN,
    DecomposedStudent,
    FeatureProjection,
    LocalAttentiveFusion,
    ModelOutput,
)
from lightning_modules.tasks import DenseTask


def test_dense_layout() -> None:
    features, mask = inputs()
    out = dense_student()(features, mask)
    assert out.logits.shape == (2, K, 14) and out.embeddings.shape == (2, FUSED, 14)
    for branch in ("motion", "appearance"):
        nested = out.extras[branch]
        assert isinstance(nested, ModelOutput)
        assert nested.embeddings.shape == (2, BRANCH, 14) and nested.logits.shape == (2, K, 14)


def test_segment_layout() -> None:
    features, mask = inputs()
    out = segment_student()(features, mask)
    points = 16 + 8 + 4  # grid 14 padded to 16, three levels
    assert out.logits.shape == (2, K, points) and out.extras["offsets"].shape == (2, 2, points)
    motion = out.extras["motion"]
    assert motion.logits.shape == (2, K, points) and motion.extras["offsets"].shape[-1] == points
    assert motion.embeddings.shape == (2, BRANCH, 14)


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_one_branch_detector_serves_both_branches() -> None:
    shared, separate = dense_student(), dense_student(share_branch_head=False)
    calls = count_calls(shared.branch_head)
    shared(*inputs())
    assert calls[0] == 2 and shared.motion_head is None
    head_size = sum(p.numel() for p in shared.branch_head.parameters())
    size = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in separate.parameters()) == size + head_size
    own = {p.data_ptr() for p in separate.motion_head.parameters()}
    assert own.isdisjoint(p.data_ptr() for p in separate.branch_head.parameters())


VARIANTS = {
    "laf": {"fusion": "laf"},
    "laf_window": {"fusion": "laf", "fusion_window": 3},
    "concat": {"fusion": "concat"},
    "sum": {"fusion": "sum"},
    "cross_attention": {"fusion": "cross_attention", "attention_heads": 2},
    "kernel_3": {"kernel_size": 3},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_runs_and_padding_never_reaches_valid_steps(variant: str) -> None:
    torch.manual_seed(0)
    model = dense_student(**VARIANTS[variant]).eval()
    features, mask = inputs()
    out = model(features, mask)
    assert out.logits.shape == (2, K, 14) and torch.isfinite(out.logits).all()
    noisy = features["features"].clone()
    noisy[~mask[:, None].expand_as(noisy)] = 50.0
    again = model({"features": noisy}, mask)
    valid = mask[:, None].expand_as(out.logits)
    torch.testing.assert_close(again.logits[valid], out.logits[valid])


@pytest.mark.parametrize("variant", ["laf_window", "cross_attention"])
def test_bf16_autocast_forward_and_backward(variant: str) -> None:
    model = segment_student(**VARIANTS[variant])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*inputs())
        loss = out.logits.float().sum() + out.extras["motion"].logits.float().sum()
    loss.backward()
    assert torch.isfinite(loss) and grads(model.motion) > 0


def test_a_joint_head_of_the_wrong_width_is_an_error() -> None:
    with pytest.raises(ValueError, match="in_channels to 12"):
        DecomposedStudent(FeatureProjection(16, 20), PDAN(BRANCH, K), PDAN(FUSED, K), fusion="sum")
    with pytest.raises(ValueError, match="fusion_window"):
        dense_student(fusion="concat", fusion_window=3)


def test_local_attentive_fusion_gates_the_target_by_the_reference() -> None:
    torch.manual_seed(0)
    fusion = LocalAttentiveFusion(4)
    target, reference = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = fusion(target, reference, mask)
    for b in range(2):
        n = int(mask[b].sum())
        context = fusion.query(target[b : b + 1, :, :n].mean(-1, keepdim=True))
        gate = torch.sigmoid(context * fusion.key(reference[b : b + 1, :, :n]))
        torch.testing.assert_close(out[b : b + 1, :, :n], gate * target[b : b + 1, :, :n])
        assert (out[b, :, n:] == 0).all()


def grads(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    ("joint_gradient", "motion", "appearance"),
    [("appearance", False, True), ("both", True, True), ("none", False, False)],
)
def test_the_joint_loss_reaches_the_branches_joint_gradient_names(
    joint_gradient: str, motion: bool, appearance: bool
) -> None:
    """By default (the method) f_M gets no ground-truth gradient: the joint detector's loss
    reaches the backbone through the appearance branch only."""
    kwargs = {} if joint_gradient == "appearance" else {"joint_gradient": joint_gradient}
    model = dense_student(**kwargs)
    model(*inputs()).logits.sum().backward()
    assert grads(model.fusion) > 0 and grads(model.joint_head) > 0
    assert (grads(model.motion) > 0) == motion and (grads(model.appearance) > 0) == appearance
    assert (grads(model.encoder) > 0) == appearance
    with pytest.raises(ValueError, match="joint_gradient"):
        dense_student(joint_gradient="motion")


def test_detach_motion_in_branch_head_keeps_the_motion_path_out_of_the_shared_head() -> None:
    for detach in (False, True):
        model = dense_student(detach_motion_in_branch_head=detach)
        model(*inputs()).extras["motion"].logits.sum().backward()
        assert grads(model.motion) > 0 and grads(model.appearance) == 0
        assert (grads(model.branch_head) == 0) == detach
    model.zero_grad()
    model(*inputs()).extras["appearance"].logits.sum().backward()
    assert grads(model.branch_head) > 0
    with pytest.raises(ValueError, match="share_branch_head"):
        dense_student(share_branch_head=False, detach_motion_in_branch_head=True)


def test_inference_only_skips_the_branch_detectors_and_keeps_the_joint_output() -> None:
    model = segment_student().eval()
    features, mask = inputs()
    full = model(features, mask)
    calls = count_calls(model.branch_head)
    fast = model.inference_only()(features, mask)
    assert calls[0] == 0 and "motion" not in fast.extras and "appearance" not in fast.extras
    torch.testing.assert_close(fast.logits, full.logits)
    assert "motion" in model.inference_only(False)(features, mask).extras


def test_joint_loss_drops_when_fitting_one_batch_with_all_four_losses() -> None:
    torch.manual_seed(0)
    model = dense_student()
    features, mask = inputs(batch=4, steps=24, valid=18)
    targets = (features["features"][:, :K] > 0.3).transpose(1, 2)
    batch = {"targets": {"frames": targets}, "mask": mask}
    teacher = ModelOutput(
        embeddings=torch.randn(4, BRANCH, 24) * mask[:, None],
        logits=torch.randn(4, K, 24) * 3,
        mask=mask,
    )
    task = DenseTask()
    objectives = [
        AppearanceTaskLoss(task),
        MotionFeatureImitation(BRANCH, {"flow": BRANCH}),
        MotionPredictionImitation(),
    ]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    joint, total = [], []
    for _ in range(40):
        optimiser.zero_grad()
        out = model(features, mask)
        loss = task.loss(out, batch)["loss"]
        joint.append(loss.item())
        loss = loss + sum(o.weight * o(out, {"flow": teacher}, batch) for o in objectives)
        total.append(loss.item())
        loss.backward()
        optimiser.step()
    assert joint[-1] < 0.3 * joint[0] and total[-1] < 0.6 * total[0]
