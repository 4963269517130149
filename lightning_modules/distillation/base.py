"""The objective contract, and the reading and masking helpers every objective shares.

An objective is a named, weighted term of the distillation loss:
`forward(student, teachers, batch) -> Tensor`, a float32 scalar, unweighted (the DistillModule
multiplies by `weight`, sums the terms and logs each one by its key in the config's
`objectives:` mapping, which it gives the objective as `name`). `teachers` maps teacher
name to that teacher's `ModelOutput` on the same batch. Objectives read only `ModelOutput`s
(`lightning_modules/models/outputs.py`), so each one works with every encoder and head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.models.outputs import EMBEDDINGS_TAP, HEAD_TAP, ModelOutput

Teachers = Mapping[str, ModelOutput]


class ObjectiveNameError(ConfigError):
    """An `objectives:` name that is no objective of the config, or one the logs reserve."""


def detach_output(output: ModelOutput) -> ModelOutput:
    """The same outputs cut from the graph, nested outputs (`extras["motion"]`) included.

    Teachers are frozen and run under `no_grad` by the caller; detaching here as well makes
    "no gradient ever reaches a teacher" hold by construction, whatever the caller did.
    """

    def cut(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach()
        if isinstance(value, ModelOutput):
            return detach_output(value)
        if isinstance(value, dict):
            return {key: cut(item) for key, item in value.items()}
        return value

    return replace(
        output,
        embeddings=cut(output.embeddings),
        logits=cut(output.logits),
        taps=cut(output.taps),
        extras=cut(output.extras),
    )


class Objective(nn.Module):
    """Base of every objective: a name, a weight, the teachers it reads, fp32 computation.

    `teachers=None` uses every teacher the caller passes; a list restricts it to those names
    (all must be present). Subclasses implement `compute`, which runs with autocast disabled
    on detached teacher outputs, so a `bf16-mixed` run still gets an fp32 loss.
    """

    needs_held_out_split: bool = False
    """True for an objective that must see the frozen teachers on held-out data before training
    (Radevski et al.'s held-out weighting): the DistillModule then sums its
    `held_out_statistics(teachers, batch)` over the held-out training videos and every rank,
    and hands the total to `fit_held_out(statistics, teacher_names)` when training starts."""

    def __init__(self, weight: float = 1.0, teachers: list[str] | None = None) -> None:
        super().__init__()
        self.name = type(self).__name__
        """Its key in the DistillModule's `objectives` (the logged name) once it is part of one."""
        self.weight = float(weight)
        self.teacher_names = None if teachers is None else tuple(teachers)

    def forward(self, student: ModelOutput, teachers: Teachers, batch: Mapping[str, Any]) -> Tensor:
        chosen = {name: detach_output(output) for name, output in self.select(teachers).items()}
        with torch.autocast(device_type=student.mask.device.type, enabled=False):
            return self.compute(student, chosen, batch).float()

    def select(self, teachers: Teachers) -> dict[str, ModelOutput]:
        """The teachers this objective reads, in a fixed order."""
        if self.teacher_names is None:
            return dict(teachers)
        missing = [name for name in self.teacher_names if name not in teachers]
        if missing:
            raise KeyError(
                f"objective {self.name!r} reads teachers {missing}, but the DistillModule has "
                f"only {sorted(teachers)}"
            )
        return {name: teachers[name] for name in self.teacher_names}

    def compute(
        self, student: ModelOutput, teachers: dict[str, ModelOutput], batch: Mapping[str, Any]
    ) -> Tensor:
        raise NotImplementedError


class PairwiseObjective(Objective):
    """An objective defined between the student and one teacher, averaged over the teachers
    it reads (Dai et al.'s rule for several teachers: average the KD terms)."""

    def compute(
        self, student: ModelOutput, teachers: dict[str, ModelOutput], batch: Mapping[str, Any]
    ) -> Tensor:
        if not teachers:
            raise ValueError(f"objective {self.name!r} needs at least one teacher")
        terms = [self.pair(student, name, teacher, batch) for name, teacher in teachers.items()]
        return torch.stack(terms).mean()

    def pair(
        self, student: ModelOutput, name: str, teacher: ModelOutput, batch: Mapping[str, Any]
    ) -> Tensor:
        """The term between the student and the teacher called `name`."""
        raise NotImplementedError


def features(output: ModelOutput, tap: str = HEAD_TAP) -> tuple[Tensor, Tensor]:
    """`(B, C, L)` float32 features and their `(B, L)` mask: `taps[tap]`, or the embeddings
    for `tap="embeddings"`.

    A tap on the grid uses the batch mask; a pyramid level tap (`level{l}` of a segment
    head) uses that level's part of `extras["point_mask"]`; a pooled `(B, C)` tap is one valid
    step per sample.
    """
    if tap == EMBEDDINGS_TAP:
        return output.embeddings.float(), output.mask
    if tap not in output.taps:
        raise KeyError(f"no tap {tap!r} in the model's outputs; it has {sorted(output.taps)}")
    x = output.taps[tap].float()
    if x.dim() == 2:
        return x[..., None], torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)
    length = x.shape[-1]
    if length == output.mask.shape[-1]:
        return x, output.mask
    if "point_mask" in output.extras:
        levels = output.extras["points"][:, 2]
        for level in levels.unique():
            chosen = levels == level
            if int(chosen.sum()) == length:
                return x, output.extras["point_mask"][:, chosen]
    raise ValueError(f"tap {tap!r} has {length} steps and no mask of that length is known")


def paired_features(
    student: ModelOutput, teacher: ModelOutput, tap: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Student features, teacher features and the student's mask, checked to share a grid."""
    x, mask = features(student, tap)
    y, _ = features(teacher, tap)
    if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"student {tuple(x.shape)} and teacher {tuple(y.shape)} features are not on the "
            "same batch and grid"
        )
    return x, y, mask


def masked_mse(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error of `(B, C, L)` features over channels and valid steps."""
    keep = mask[:, None]
    squared = (x.masked_fill(~keep, 0.0) - y.masked_fill(~keep, 0.0)) ** 2
    return squared.sum() / (keep.sum() * x.shape[1]).clamp(min=1)


def mean_over_videos(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of per-video values `(B,)` over the videos marked valid (zero if there are none)."""
    valid = valid.float()
    return (values * valid).sum() / valid.sum().clamp(min=1.0)


def logit_heads(logits: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Logits as a dict per head; a single tensor is the head `""`."""
    return {"": logits} if isinstance(logits, Tensor) else dict(logits)


def logit_mask(output: ModelOutput) -> Tensor | None:
    """Which positions of the logits are real: pyramid points, grid steps, or all (clips)."""
    if "point_mask" in output.extras:
        return output.extras["point_mask"]
    logits = next(iter(logit_heads(output.logits).values()))
    return output.mask if logits.dim() == 3 else None


def logit_rows(logits: Tensor, mask: Tensor | None) -> Tensor:
    """`(N, K)` float32 rows (of class logits, or offsets): `(B, K)` as is, `(B, K, L)` at the
    valid positions."""
    logits = logits.float()
    if logits.dim() == 2:
        return logits
    return logits.movedim(1, -1)[mask]


def softmax_kd(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Hinton's term on `(N, K)` rows: `T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`, mean over
    rows. The T² keeps the gradient scale independent of T."""
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return temperature**2 * kl.mean() if len(kl) else student.sum() * 0.0


def bernoulli_kl(student: Tensor, teacher: Tensor) -> Tensor:
    """Element-wise `KL(σ(z_t) ‖ σ(z_s))` of logits: the BCE to the teacher's scores less the
    teacher's entropy (the same gradient, but zero when the student matches)."""
    p = torch.sigmoid(teacher)
    return p * (F.logsigmoid(teacher) - F.logsigmoid(student)) + (1 - p) * (
        F.logsigmoid(-teacher) - F.logsigmoid(-student)
    )


def sigmoid_kd(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Per-class Bernoulli KD on `(N, K)` rows: `T² · KL(σ(z_t/T) ‖ σ(z_s/T))`, mean over rows
    and classes."""
    kl = bernoulli_kl(student / temperature, teacher / temperature)
    return temperature**2 * kl.mean() if kl.numel() else student.sum() * 0.0


KDTerm = Callable[[Tensor, Tensor, float], Tensor]
"""`softmax_kd` or `sigmoid_kd`: `(student rows, teacher rows, temperature) -> scalar`."""


def logit_kd(
    student: Tensor | Mapping[str, Tensor],
    teacher: Tensor | Mapping[str, Tensor],
    mask: Tensor | None,
    kd: KDTerm,
    temperature: float,
) -> Tensor:
    """`kd` between student and teacher logits at the valid positions (`mask`, see
    `logit_mask`), averaged over heads; both need the same heads, classes and positions."""
    student_heads, teacher_heads = logit_heads(student), logit_heads(teacher)
    if student_heads.keys() != teacher_heads.keys():
        raise ValueError(
            f"heads differ: student {sorted(student_heads)}, teacher {sorted(teacher_heads)}"
        )
    terms = []
    for head, logits in student_heads.items():
        if logits.shape != teacher_heads[head].shape:
            raise ValueError(
                f"student logits {tuple(logits.shape)} and teacher logits "
                f"{tuple(teacher_heads[head].shape)} differ (same classes and grid needed)"
            )
        rows = logit_rows(logits, mask), logit_rows(teacher_heads[head], mask)
        terms.append(kd(*rows, temperature))
    return torch.stack(terms).mean()


RESERVED_TERMS = ("loss", "task")


def named_objectives(objectives: Mapping[str, Objective]) -> dict[str, Objective]:
    """The objectives, each told its name (its key); a key that is no objective of a class of
    its own (a flag naming a term the config does not have) is refused with the known ones."""
    named = {}
    for name, objective in objectives.items():
        if type(objective) is Objective or not isinstance(objective, Objective):
            known = [key for key, o in objectives.items() if type(o) is not Objective]
            raise ObjectiveNameError(
                f"objective {name!r} names no objective class; the config's objectives are "
                f"{known}. Fix: spell one of them, or give {name!r} a class_path"
            )
        if name in RESERVED_TERMS or name.startswith("task_") or "." in name:
            raise ObjectiveNameError(
                f"objective {name!r}: the names loss, task, task_* and names with dots are "
                "taken by the logged loss terms; rename it"
            )
        objective.name = name
        named[name] = objective
    return named
