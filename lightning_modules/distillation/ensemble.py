"""Multimodal teachers (Radevski, Grujicic, Blaschko, Moens, Tuytelaars, "Multimodal
Distillation for Egocentric Action Recognition", ICCV 2023): the teacher is a fixed-weight
ensemble of frozen unimodal teachers' logits, distilled into an RGB student.

The ensemble is a weighted sum of the teachers' logits per head (a single tensor, or a dict per
head such as `verb`/`noun`), with weights that are fixed, never learned:

- `uniform`: 1/K each (the authors' default);
- `per_sample`: for each sample, the softmin over teachers of each teacher's cross-entropy on
  the sample's label (a teacher that is right about this sample counts more);
- `held_out`: one vector per head from data no teacher trained on. Given in the config
  (`weights`), or fitted by the DistillModule when training starts: as the authors do, a part
  of the training set is held out from teacher training (`data.init_args.held_out_fraction`,
  the same for the teachers and the student); the frozen teachers run once over it and their
  cross-entropies give one vector per head (verb and noun specialists get opposite weights)
  by the rule of `held_out_weights`. The student itself trains on every training video, held
  out ones included, as the authors' does. Validation and test stay untouched, which matters
  where the validation set is the reported one (EPIC-KITCHENS-100, Something-Something V2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.distillation.base import (
    Objective,
    logit_heads,
    logit_kd,
    logit_mask,
    softmax_kd,
)
from lightning_modules.models.outputs import ModelOutput

Logits = Tensor | Mapping[str, Tensor]
Weighting = Literal["uniform", "per_sample", "held_out"]
Weights = dict[str, float] | dict[str, dict[str, float]]
"""Held-out weights: `{teacher: w}` for every head, or `{head: {teacher: w}}` per head."""


def _by_head(teacher_logits: Mapping[str, Logits]) -> dict[str, dict[str, Tensor]]:
    """`{head: {teacher: (N, K) float32}}`, checking that every teacher has the same heads."""
    if not teacher_logits:
        raise ValueError("an ensemble needs at least one teacher")
    heads: dict[str, dict[str, Tensor]] = {}
    for teacher, logits in teacher_logits.items():
        per_head = logit_heads(logits)
        if heads and per_head.keys() != heads.keys():
            raise ValueError(
                f"teacher {teacher!r} has heads {sorted(per_head)}, not {sorted(heads)}"
            )
        for head, value in per_head.items():
            heads.setdefault(head, {})[teacher] = value.float()
    return heads


def _row_labels(labels: Tensor, rows: int) -> Tensor:
    """Labels for `rows` rows of logits: test views fold `V` contiguous rows per sample."""
    if rows % len(labels):
        raise ValueError(f"{rows} rows of logits are not views of {len(labels)} labelled samples")
    return labels.repeat_interleave(rows // len(labels))


def _labels_by_head(labels: Tensor | Mapping[str, Tensor], heads: Mapping[str, Any]) -> dict:
    """The labels as a dict per head, in the logits' structure (`batch["targets"]["clip"]`)."""
    per_head = logit_heads(labels)
    if per_head.keys() != heads.keys():
        raise ValueError(f"label heads {sorted(per_head)} differ from logit heads {sorted(heads)}")
    return per_head


def _cross_entropies(logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
    """`(M, N)` cross-entropy of each teacher's logits on each row's label."""
    return torch.stack(
        [
            F.cross_entropy(z, _row_labels(labels, len(z)).to(z.device), reduction="none")
            for z in logits.values()
        ]
    )


def sample_weights(logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
    """Per-sample weights `(M, N)` of `M` teachers' `(N, K)` logits of one head: the softmin
    over teachers of each teacher's cross-entropy on the label."""
    return (-_cross_entropies(logits, labels)).softmax(dim=0)


def held_out_sums(
    teacher_logits: Mapping[str, Logits], labels: Tensor | Mapping[str, Tensor]
) -> tuple[Tensor, int]:
    """Per head and teacher, the cross-entropy summed over rows `(H, M)`, and the rows.

    Sums over batches and over DDP ranks add up, so a split read in pieces gives the same
    weights as the whole split at once (`weights_from_sums`).
    """
    heads = _by_head(teacher_logits)
    labels_by_head = _labels_by_head(labels, heads)
    ce = torch.stack([_cross_entropies(heads[h], labels_by_head[h]) for h in heads])
    return ce.sum(dim=2), ce.shape[2]


def weights_from_sums(
    names: list[str], heads: list[str], sums: Tensor, rows: int | float
) -> Weights:
    """Per head, the softmin over teachers of each teacher's mean cross-entropy on the split
    (`held_out_sums`); `{teacher: w}` for a single-head model, `{head: {teacher: w}}` else."""
    if rows <= 0:
        raise ValueError("held-out weights need at least one held-out sample")
    weights = (-(sums.double().reshape(len(heads), len(names)) / rows)).softmax(dim=1)
    per_head = {
        head: {name: float(w) for name, w in zip(names, row, strict=True)}
        for head, row in zip(heads, weights, strict=True)
    }
    return per_head[""] if heads == [""] else per_head


def held_out_weights(
    teacher_logits: Mapping[str, Logits], labels: Tensor | Mapping[str, Tensor]
) -> Weights:
    """One weight vector per head from the teachers' logits on a held-out split (all batches
    concatenated): the authors' rule, the softmin over teachers of each teacher's mean
    cross-entropy on the split, head by head (the per-sample rule aggregated over the split).
    It rewards calibrated confidence, not only accuracy, and never gives a teacher zero weight.
    """
    sums, rows = held_out_sums(teacher_logits, labels)
    heads = list(_by_head(teacher_logits))
    return weights_from_sums(list(teacher_logits), heads, sums, rows)


def _fixed_weights(weights: Weights, names: list[str], head: str) -> Tensor:
    """The configured vector of `head` over `names`, normalised to sum to one (extra names
    ignored)."""
    chosen = weights.get(head) if all(isinstance(v, Mapping) for v in weights.values()) else weights
    if not isinstance(chosen, Mapping):
        raise KeyError(f"held-out weights give no vector for head {head!r}: {sorted(weights)}")
    missing = [name for name in names if name not in chosen]
    if missing:
        raise KeyError(f"held-out weights give no weight for teachers {missing}")
    values = torch.tensor([float(chosen[name]) for name in names])
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"held-out weights must be non-negative and not all zero: {weights}")
    return values / values.sum()


def ensemble_logits(
    teacher_logits: Mapping[str, Logits],
    weighting: Weighting = "uniform",
    labels: Tensor | Mapping[str, Tensor] | None = None,
    weights: Weights | None = None,
) -> Logits:
    """The multimodal teacher: per head, the weighted sum of the teachers' logits.

    `teacher_logits` maps teacher name to its logits, `(N, K)` or a dict of them per head.
    `per_sample` needs `labels` (`batch["targets"]["clip"]`), `held_out` needs `weights`.
    Returns float32 logits in the teachers' structure; also what the table's "multimodal
    teacher" row evaluates.
    """
    heads = _by_head(teacher_logits)
    names = list(teacher_logits)
    if weighting == "per_sample":
        if labels is None:
            raise ValueError("per-sample weighting needs the labels")
        labels_by_head = _labels_by_head(labels, heads)
    elif weighting == "held_out":
        if weights is None:
            raise ValueError("held-out weighting needs the weights vector")
    elif weighting != "uniform":
        raise ValueError(f"unknown weighting {weighting!r}")
    fused = {}
    for head, logits in heads.items():
        stacked = torch.stack([logits[name] for name in names])  # (M, N, K)
        if weighting == "per_sample":
            w = sample_weights(logits, labels_by_head[head])[..., None]
        elif weighting == "held_out":
            w = _fixed_weights(weights, names, head).to(stacked.device)[:, None, None]
        else:
            w = torch.full((len(names), 1, 1), 1.0 / len(names), device=stacked.device)
        fused[head] = (w * stacked).sum(dim=0)
    return fused[""] if "" in fused else fused


class EnsembleLogitKD(Objective):
    """Radevski et al.'s loss: `T² · KL(softmax(z_ens/T) ‖ softmax(z_s/T))` per head, averaged
    over heads, with `z_ens` the fixed-weight ensemble of the teachers' logits (T = 1 by
    default, as the authors). The λ_GT · CE part is the task loss, added by the DistillModule.

    Args:
        weighting: `uniform`, `per_sample` (reads `batch["targets"]["clip"]`) or `held_out`.
        weights: teacher name -> weight (every head), or head -> teacher -> weight, for
            `held_out` only; without it the DistillModule fits one vector per head on the
            held-out training videos when training starts.
        temperature: softmax temperature T.
        teachers: the teachers in the ensemble (default: all).
    Reads `logits` of the student and of every teacher.
    """

    def __init__(
        self,
        weighting: Weighting = "uniform",
        weights: Weights | None = None,
        temperature: float = 1.0,
        teachers: list[str] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight, teachers)
        if weighting not in ("uniform", "per_sample", "held_out"):
            raise ValueError(f"unknown weighting {weighting!r}")
        if weights is not None and weighting != "held_out":
            raise ValueError(f"`weights` is for weighting 'held_out', not {weighting!r}")
        self.weighting, self.weights, self.temperature = weighting, weights, temperature
        self.needs_held_out_split = weighting == "held_out" and weights is None

    def held_out_statistics(
        self, teachers: dict[str, ModelOutput], batch: Mapping[str, Any]
    ) -> Tensor:
        """This batch's share of the held-out fit: `(H * M + 1,)`, the teachers' summed
        cross-entropies head by head, then the row count."""
        chosen = self.select(teachers)
        sums, rows = held_out_sums(
            {name: output.logits for name, output in chosen.items()}, batch["targets"]["clip"]
        )
        return torch.cat([sums.flatten(), sums.new_tensor([rows])])

    def fit_held_out(
        self, statistics: Tensor, teacher_names: list[str], heads: list[str]
    ) -> dict[str, float]:
        """Set the weights from the statistics summed over the whole split (and every rank);
        returns them flat for logging (`teacher`, or `head/teacher` per head)."""
        names = list(teacher_names if self.teacher_names is None else self.teacher_names)
        self.weights = weights_from_sums(names, heads, statistics[:-1], float(statistics[-1]))
        if heads == [""]:
            return dict(self.weights)
        return {f"{h}/{n}": w for h, vector in self.weights.items() for n, w in vector.items()}

    def compute(
        self, student: ModelOutput, teachers: dict[str, ModelOutput], batch: Mapping[str, Any]
    ) -> Tensor:
        if self.weighting == "held_out" and self.weights is None:
            raise RuntimeError(
                f"objective {self.name!r}: the held-out weights are not fitted yet. The "
                "DistillModule fits them on the held-out training videos when training starts; "
                "elsewhere, pass `weights` (computed with `held_out_weights`)"
            )
        labels = batch["targets"]["clip"] if self.weighting == "per_sample" else None
        target = ensemble_logits(
            {name: teacher.logits for name, teacher in teachers.items()},
            self.weighting,
            labels,
            self.weights,
        )
        return logit_kd(student.logits, target, logit_mask(student), softmax_kd, self.temperature)
