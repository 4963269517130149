"""Radevski et al.'s multimodal teacher: the three weightings and the loss, against direct
computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.distillation import (
    EnsembleLogitKD,
    ensemble_logits,
    held_out_weights,
    sample_weights,
)
from lightning_modules.models import ModelOutput


def clip(logits) -> ModelOutput:
    rows = logits if isinstance(logits, torch.Tensor) else next(iter(logits.values()))
    return ModelOutput(
        embeddings=torch.zeros(len(rows), 2, 3),
        logits=logits,
        mask=torch.ones(len(rows), 3, dtype=torch.bool),
    )


def test_uniform_is_the_mean_of_the_teachers_logits_per_head() -> None:
    torch.manual_seed(0)
    a = {"verb": torch.randn(3, 5), "noun": torch.randn(3, 4)}
    b = {"verb": torch.randn(3, 5), "noun": torch.randn(3, 4)}
    fused = ensemble_logits({"rgb": a, "flow": b})
    assert set(fused) == {"verb", "noun"}
    for head in fused:
        torch.testing.assert_close(fused[head], (a[head] + b[head]) / 2)


def test_per_sample_weights_are_a_softmin_of_cross_entropy_and_favour_the_right_teacher() -> None:
    labels = torch.tensor([0, 1])
    right_on_0 = torch.tensor([[4.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    right_on_1 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    logits = {"rgb": right_on_0, "flow": right_on_1}
    weights = sample_weights(logits, labels)
    for row in range(2):
        ce = [-F.log_softmax(z[row], -1)[labels[row]].item() for z in logits.values()]
        expected = [math.exp(-c) / sum(math.exp(-d) for d in ce) for c in ce]
        assert weights[:, row].tolist() == pytest.approx(expected, rel=1e-5)
    assert weights[0, 0] > weights[1, 0] and weights[1, 1] > weights[0, 1]
    fused = ensemble_logits(logits, "per_sample", labels)
    torch.testing.assert_close(
        fused, weights[0, :, None] * right_on_0 + weights[1, :, None] * right_on_1
    )


def test_per_sample_weights_repeat_labels_over_folded_views() -> None:
    torch.manual_seed(0)
    logits = {"rgb": torch.randn(6, 4), "flow": torch.randn(6, 4)}
    labels = torch.tensor([0, 3])  # 2 samples x 3 views
    torch.testing.assert_close(
        sample_weights(logits, labels), sample_weights(logits, labels.repeat_interleave(3))
    )


def test_held_out_weights_are_one_softmin_of_mean_cross_entropy_per_head() -> None:
    """The authors' rule, head by head: a verb specialist and a noun specialist get opposite
    weights on the two heads (one vector averaged over heads gave both about one half)."""
    torch.manual_seed(0)
    labels = {"verb": torch.randint(0, 5, (8,)), "noun": torch.randint(0, 4, (8,))}
    right = {
        h: F.one_hot(y, k).float() * 5 for (h, y), k in zip(labels.items(), (5, 4), strict=True)
    }
    wrong = {"verb": torch.zeros(8, 5), "noun": torch.zeros(8, 4)}
    verb_expert = {"verb": right["verb"], "noun": wrong["noun"]}
    noun_expert = {"verb": wrong["verb"], "noun": right["noun"]}
    weights = held_out_weights({"rgb": verb_expert, "boxes": noun_expert}, labels)
    for head in labels:
        ce = {
            name: F.cross_entropy(z[head], labels[head]).item()
            for name, z in (("rgb", verb_expert), ("boxes", noun_expert))
        }
        norm = sum(math.exp(-c) for c in ce.values())
        assert weights[head] == pytest.approx({n: math.exp(-c) / norm for n, c in ce.items()})
    assert weights["verb"]["rgb"] > 0.75 and weights["noun"]["boxes"] > 0.75  # not ~0.5 each
    fused = ensemble_logits({"rgb": verb_expert, "boxes": noun_expert}, "held_out", weights=weights)
    torch.testing.assert_close(
        fused["verb"],
        weights["verb"]["rgb"] * verb_expert["verb"] + weights["verb"]["boxes"] * wrong["verb"],
    )


def test_held_out_weighting_normalises_the_configured_vector() -> None:
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    fused = ensemble_logits({"rgb": a, "flow": b}, "held_out", weights={"rgb": 1.0, "flow": 3.0})
    torch.testing.assert_close(fused, 0.25 * a + 0.75 * b)
    with pytest.raises(KeyError, match="flow"):
        ensemble_logits({"rgb": a, "flow": b}, "held_out", weights={"rgb": 1.0})


def test_loss_is_t_squared_kl_to_the_ensemble_averaged_over_heads() -> None:
    torch.manual_seed(0)
    heads = {"verb": 5, "noun": 4}
    student = {h: torch.randn(3, k) for h, k in heads.items()}
    teachers = {n: {h: torch.randn(3, k) for h, k in heads.items()} for n in ("rgb", "flow")}
    labels = {h: torch.randint(0, k, (3,)) for h, k in heads.items()}
    objective = EnsembleLogitKD("per_sample", temperature=2.0)
    loss = objective(
        clip(student), {n: clip(z) for n, z in teachers.items()}, {"targets": {"clip": labels}}
    )
    expected = []
    for head in heads:
        w = sample_weights({n: z[head] for n, z in teachers.items()}, labels[head])
        target = w[0, :, None] * teachers["rgb"][head] + w[1, :, None] * teachers["flow"][head]
        kl = F.kl_div(
            F.log_softmax(student[head] / 2, -1), F.softmax(target / 2, -1), reduction="batchmean"
        )
        expected.append(4 * kl.item())
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_held_out_statistics_add_up_over_pieces_of_the_split() -> None:
    """Batches (and DDP ranks) sum their statistics: the pieces give the whole split's weights,
    in the order of the objective's `teachers`."""
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (10,))
    logits = {n: torch.randn(20, 5) * s for n, s in (("rgb", 1.0), ("flow", 3.0), ("pose", 0.3))}
    objective = EnsembleLogitKD("held_out", teachers=["pose", "rgb"])
    assert objective.needs_held_out_split
    total = sum(
        objective.held_out_statistics(
            {n: clip(z[2 * lo : 2 * hi]) for n, z in logits.items()},
            {"targets": {"clip": labels[lo:hi]}},
        )
        for lo, hi in ((0, 3), (3, 4), (4, 10))
    )
    fitted = objective.fit_held_out(total, ["rgb", "flow", "pose"], [""])
    whole = held_out_weights({n: logits[n] for n in ("pose", "rgb")}, labels)
    assert list(fitted) == ["pose", "rgb"]
    assert fitted == pytest.approx(whole, abs=1e-6)
    assert not EnsembleLogitKD("held_out", weights={"rgb": 1.0}).needs_held_out_split


def test_configuration_errors() -> None:
    unfitted = EnsembleLogitKD("held_out")
    logits = clip(torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        unfitted(logits, {"rgb": logits}, {"targets": {"clip": torch.zeros(2, dtype=torch.long)}})
    with pytest.raises(ValueError, match="held_out"):
        EnsembleLogitKD("uniform", weights={"rgb": 1.0})
    with pytest.raises(ValueError, match="labels"):
        ensemble_logits({"rgb": torch.zeros(2, 3)}, "per_sample")
