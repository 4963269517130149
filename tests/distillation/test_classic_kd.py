"""The classic baselines against their textbook formulas on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules.distillation import (
    AttentionTransfer,
    FitNet,
    LogitKD,
    SimilarityPreserving,
)
from lightning_modules.models import ModelOutput

MASK = torch.tensor([[True, True, True, True], [True, True, False, False]])


def output(x: torch.Tensor, logits, mask: torch.Tensor = MASK) -> ModelOutput:
    return ModelOutput(embeddings=x, logits=logits, mask=mask, taps={"head": x})


def test_softmax_kd_is_hinton_kl_times_t_squared_averaged_over_heads() -> None:
    torch.manual_seed(0)
    s = {"verb": torch.randn(3, 5), "noun": torch.randn(3, 4)}
    t = {"verb": torch.randn(3, 5), "noun": torch.randn(3, 4)}
    mask = torch.ones(3, 2, dtype=torch.bool)
    x = torch.zeros(3, 2, 2)
    loss = LogitKD("softmax", temperature=2.0)(output(x, s, mask), {"rgb": output(x, t, mask)}, {})
    expected = [
        4.0 * F.kl_div(F.log_softmax(s[h] / 2, -1), F.softmax(t[h] / 2, -1), reduction="batchmean")
        for h in s
    ]
    assert loss.item() == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_sigmoid_kd_is_bce_to_teacher_scores_less_their_entropy_over_valid_steps() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4) * 3, torch.randn(2, 3, 4) * 3
    x = torch.zeros(2, 2, 4)
    loss = LogitKD("sigmoid")(output(x, s), {"flow": output(x, t)}, {})
    p = torch.sigmoid(t / 4)
    bce = F.binary_cross_entropy_with_logits(s / 4, p, reduction="none")
    entropy = F.binary_cross_entropy(p, p, reduction="none")
    valid = MASK[:, None].expand_as(bce)
    assert loss.item() == pytest.approx(16 * (bce - entropy)[valid].mean().item(), rel=1e-5)


def test_logit_kd_rejects_mismatched_heads() -> None:
    x = torch.zeros(2, 2, 4)
    with pytest.raises(ValueError, match="differ"):
        LogitKD("sigmoid")(
            output(x, torch.zeros(2, 3, 4)), {"flow": output(x, torch.zeros(2, 5, 4))}, {}
        )


def test_fitnet_is_masked_mse_after_a_1x1_adapter() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    objective = FitNet(3, {"flow": 5})
    logits = torch.zeros(2, 1, 4)
    loss = objective(output(x, logits), {"flow": output(y, logits)}, {})
    with torch.no_grad():
        mapped = objective.adapters["flow"](x)
    valid = MASK[:, None].expand(2, 5, 4)
    assert loss.item() == pytest.approx(((mapped - y) ** 2)[valid].mean().item(), rel=1e-5)
    assert sum(p.numel() for p in objective.parameters()) == 3 * 5 + 5


def numpy_attention(x: np.ndarray) -> np.ndarray:
    energy = (x**2).mean(axis=0)
    return energy / np.linalg.norm(energy)


def test_attention_transfer_matches_numpy() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 4), torch.randn(2, 6, 4)
    logits = torch.zeros(2, 1, 4)
    loss = AttentionTransfer()(output(x, logits), {"flow": output(y, logits)}, {})
    expected = []
    for b in range(2):
        valid = MASK[b].numpy()
        a_s = numpy_attention(x[b].numpy()[:, valid].astype(np.float64))
        a_t = numpy_attention(y[b].numpy()[:, valid].astype(np.float64))
        expected.append(((a_s - a_t) ** 2).sum())
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-5)


def numpy_similarity(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    pooled = np.stack([x[b][:, mask[b]].mean(axis=1) for b in range(len(x))])
    gram = pooled @ pooled.T
    return gram / np.linalg.norm(gram, axis=1, keepdims=True)


def test_similarity_preserving_matches_numpy() -> None:
    torch.manual_seed(0)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    x, y = torch.randn(3, 3, 4), torch.randn(3, 6, 4)
    logits = torch.zeros(3, 1, 4)
    loss = SimilarityPreserving()(output(x, logits, mask), {"flow": output(y, logits, mask)}, {})
    g_s = numpy_similarity(x.numpy().astype(np.float64), mask.numpy())
    g_t = numpy_similarity(y.numpy().astype(np.float64), mask.numpy())
    assert loss.item() == pytest.approx(((g_s - g_t) ** 2).sum() / 9, rel=1e-5)
