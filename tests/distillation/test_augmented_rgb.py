"""Dai et al. 2021's three terms against direct loop / numpy implementations on tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules.distillation import (
    AtomicContrastive,
    AttentionTransfer,
    BoundarySaliency,
    FitNet,
    GlobalRelation,
    SimilarityPreserving,
)
from lightning_modules.models import ModelOutput


def output(x: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
    logits = torch.zeros(x.shape[0], 2, x.shape[-1])
    return ModelOutput(embeddings=x, logits=logits, mask=mask, taps={"head": x})


MASK = torch.tensor([[True, True, True, True, True], [True, True, True, False, False]])


def test_atomic_contrastive_is_infonce_over_valid_steps() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(2, 4, 5), torch.randn(2, 6, 5)
    objective = AtomicContrastive(4, {"flow": 6}, projection_dim=3, temperature=0.1)
    loss = objective(output(x, MASK), {"flow": output(y, MASK)}, {})
    project_s = objective.student_projections["flow"]
    project_t = objective.teacher_projections["flow"]
    steps = [(b, t) for b in range(2) for t in range(5) if MASK[b, t]]
    with torch.no_grad():
        s = [F.normalize(project_s(x[b, :, t]), dim=0) for b, t in steps]
        k = [F.normalize(project_t(y[b, :, t]), dim=0) for b, t in steps]
    expected = 0.0
    for i in range(len(steps)):
        scores = [float(s[i] @ k[j]) / 0.1 for j in range(len(steps))]
        expected -= scores[i] - math.log(sum(math.exp(v) for v in scores))
    assert loss.item() == pytest.approx(expected / len(steps), rel=1e-5)


def test_atomic_contrastive_windows_pool_valid_steps_into_units() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    objective = AtomicContrastive(4, {"flow": 4}, projection_dim=3, window=2)
    loss = objective(output(x, MASK), {"flow": output(y, MASK)}, {})
    # units by hand: steps {0,1}, {2,3}, {4}; sample 1 keeps {0,1}, {2} (3, 4 padded)
    units = [(0, [0, 1]), (0, [2, 3]), (0, [4]), (1, [0, 1]), (1, [2])]
    with torch.no_grad():
        s = torch.stack([x[b][:, idx].mean(-1) for b, idx in units])
        k = torch.stack([y[b][:, idx].mean(-1) for b, idx in units])
        s = F.normalize(objective.student_projections["flow"](s), dim=-1)
        k = F.normalize(objective.teacher_projections["flow"](k), dim=-1)
    expected = F.cross_entropy(s @ k.T / 0.1, torch.arange(len(units)))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def numpy_relation(x: np.ndarray, relation: str) -> np.ndarray:
    """One video's relation matrix from its valid steps `(C, n)`."""
    x = x - x.mean(axis=1, keepdims=True)
    if relation == "time":
        x = x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
        return x.T @ x
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


@pytest.mark.parametrize("relation", ["time", "channel"])
def test_global_relation_matches_numpy(relation: str) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    loss = GlobalRelation(relation)(output(x, MASK), {"flow": output(y, MASK)}, {})
    per_video = []
    for b in range(2):
        valid = MASK[b].numpy()
        rs = numpy_relation(x[b].numpy()[:, valid].astype(np.float64), relation)
        rt = numpy_relation(y[b].numpy()[:, valid].astype(np.float64), relation)
        per_video.append(((rs - rt) ** 2).mean())
    assert loss.item() == pytest.approx(np.mean(per_video), rel=1e-5)


def test_global_relation_channel_needs_equal_widths() -> None:
    x, y = torch.randn(2, 4, 5), torch.randn(2, 6, 5)
    with pytest.raises(ValueError, match="equal widths"):
        GlobalRelation("channel")(output(x, MASK), {"flow": output(y, MASK)}, {})


def numpy_saliency(x: np.ndarray, tau: float) -> np.ndarray:
    """Softmax over time of mean |h_{t+1} - h_t| / tau for one video's valid steps."""
    a = np.abs(np.diff(x, axis=1)).mean(axis=0) / tau
    e = np.exp(a - a.max())
    return e / e.sum()


def test_boundary_saliency_matches_numpy() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    loss = BoundarySaliency(temperature=0.5)(output(x, MASK), {"flow": output(y, MASK)}, {})
    per_video = []
    for b in range(2):
        valid = MASK[b].numpy()
        p_s = numpy_saliency(x[b].numpy()[:, valid].astype(np.float64), 0.5)
        p_t = numpy_saliency(y[b].numpy()[:, valid].astype(np.float64), 0.5)
        per_video.append((p_t * np.log(p_t / p_s)).sum())
    assert loss.item() == pytest.approx(np.mean(per_video), rel=1e-5)


def test_boundary_saliency_ignores_a_video_without_two_valid_steps() -> None:
    mask = torch.tensor([[True, True, True], [True, False, False]])
    x, y = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    loss = BoundarySaliency()(output(x, mask), {"flow": output(y, mask)}, {})
    alone = BoundarySaliency()(output(x[:1], mask[:1]), {"flow": output(y[:1], mask[:1])}, {})
    assert loss.item() == pytest.approx(alone.item(), rel=1e-6)


def _pdan_student_and_teachers() -> tuple[torch.nn.Module, dict[str, ModelOutput], dict]:
    """A feature-level RGB student (1x1 projection + PDAN) and frozen PDAN teachers' outputs."""
    from lightning_modules.models import PDAN, ActionModel, FeatureProjection

    torch.manual_seed(0)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 8:] = False

    def model() -> torch.nn.Module:
        encoder = FeatureProjection(in_channels=6, out_channels=8, modality="rgb")
        return ActionModel(encoder, PDAN(8, 3, hidden_channels=8, dilations=(1, 2), dropout=0.0))

    with torch.no_grad():
        teachers = {
            name: model()({"rgb": torch.randn(2, 6, 12)}, mask) for name in ("flow", "pose")
        }
    return model(), teachers, {"rgb": torch.randn(2, 6, 12), "mask": mask}


@pytest.mark.parametrize(
    "objective",
    [
        lambda: AtomicContrastive(8, {"flow": 8, "pose": 8}, projection_dim=4),
        lambda: GlobalRelation(),
        lambda: BoundarySaliency(),
        lambda: FitNet(8, {"flow": 8, "pose": 8}),
        lambda: AttentionTransfer(),
        lambda: SimilarityPreserving(),
    ],
    ids=["atomic", "global", "boundary", "fitnet", "attention", "similarity"],
)
def test_feature_kd_alone_trains_the_detection_head(objective) -> None:
    """Read by default, the head's last block gets the KD gradient (before, the objectives read
    the head's input and only the per-step projection learned from them)."""
    student, teachers, batch = _pdan_student_and_teachers()
    loss = objective()(student({"rgb": batch["rgb"]}, batch["mask"]), teachers, batch)
    loss.backward()
    for index, block in enumerate(student.head.blocks):
        grads = [p.grad for p in block.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, f"block{index}"
