"""DistillModule: an RGB student trained with frozen teachers.

Teachers come from TeacherModule checkpoints and are frozen by construction: `eval()`, no
gradients, held outside the module tree, so they are never in the optimiser, never moved to
train mode by Lightning, and never written into the student's checkpoint. The training loss is
`task_weight * task loss + sum(objective.weight * objective)`, every term logged by name;
evaluation runs the student alone, exactly as a TeacherModule would.

With `teacher_mode: cached` no teacher is loaded or run: `setup` checks each teacher's cache
(`crossdistill cache-teachers`, `lightning_modules.teacher_cache`) against its checkpoint and
the data config, attaches it to the training data as a modality, and `teacher_outputs` reads
the teachers' outputs from the batch. A missing, stale or damaged cache stops the run there,
before the first step, with the command that rebuilds it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lightning_modules.distillation import Objective, named_objectives
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.runs.checkpoint_io import DamagedCheckpointError, check_checkpoint_file
from lightning_modules.task_module import (
    CheckpointMismatchError,
    TaskModule,
    plain_class_names,
)
from lightning_modules.tasks import Task
from lightning_modules.teacher import TeacherModule
from lightning_modules.teacher_cache import (
    cache_modality,
    objective_taps,
    open_cache,
    teacher_modalities,
    unpack,
)


def load_frozen_teacher(checkpoint: str | Path) -> nn.Module:
    """The model of a TeacherModule checkpoint, in eval mode with gradients off."""
    return load_teacher_module(checkpoint).model


log = logging.getLogger(__name__)


class TeacherMismatchError(CheckpointMismatchError):
    """A teacher checkpoint that cannot teach this student; the message names it and the fix."""


def _first_difference(teacher: Any, data: Any) -> str:
    """Where a teacher's class names part from the data's, in words."""
    if isinstance(teacher, dict) != isinstance(data, dict):
        return f"{teacher}, the data has {data}"
    pairs = teacher.items() if isinstance(teacher, dict) else [("", teacher)]
    for head, names in pairs:
        other = data.get(head, []) if isinstance(data, dict) else data
        where = f"head {head!r}: " if head else ""
        if len(names) != len(other):
            return f"{where}{len(names)} classes, the data has {len(other)}"
        for index, (a, b) in enumerate(zip(names, other, strict=True)):
            if a != b:
                return f"{where}class {index} is {a!r} in the teacher, {b!r} in the data"
    return f"{teacher}, the data has {data}"


TRAIN_A_TEACHER = (
    "Fix: point teachers.<name> at the checkpoint of a teacher run, "
    "RUN_DIR/checkpoints/best.ckpt of `crossdistill fit --config configs/teacher/...`"
)


def check_teacher_file(path: Path) -> None:
    """Refuse, naming the file, what it is and the fix, anything that is not a TeacherModule
    checkpoint: a text file, a student export, a distilled student's checkpoint."""
    try:
        check_checkpoint_file(path)
    except DamagedCheckpointError:
        raise TeacherMismatchError(
            f"teacher checkpoint {path} is not a checkpoint (not a torch zip file: a text "
            f"file, or cut off while being written). {TRAIN_A_TEACHER}"
        ) from None
    # `mmap` reads only what is looked at: the keys, not the weights
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(checkpoint, dict):
        raise TeacherMismatchError(
            f"teacher checkpoint {path} holds no checkpoint. {TRAIN_A_TEACHER}"
        )
    if "teachers" in checkpoint.get("hyper_parameters", {}) or {
        "model",
        "task",
        "modalities",
    } <= set(checkpoint):
        what = (
            "a student export (.student.pt)"
            if "modalities" in checkpoint
            else ("a distilled student's checkpoint")
        )
        raise TeacherMismatchError(
            f"teacher checkpoint {path} is {what}, not a teacher's: a student is distilled from "
            f"teachers trained on their own modality. {TRAIN_A_TEACHER}"
        )
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise TeacherMismatchError(
            f"teacher checkpoint {path} is a torch file but not a Lightning checkpoint (keys "
            f"{sorted(checkpoint)[:6]}). {TRAIN_A_TEACHER}"
        )


def load_teacher_module(checkpoint: str | Path) -> TeacherModule:
    """A TeacherModule checkpoint with its model frozen (eval mode, gradients off); the module
    also carries what the checkpoint records of its training data (`held_out_digest`)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {path} does not exist. Fix: train the teacher first "
            "(crossdistill fit --config configs/teacher/...) and point teachers.<name> at its .ckpt"
        )
    check_teacher_file(path)
    module = TeacherModule.load_from_checkpoint(path, map_location="cpu")
    module.model.eval()
    module.model.requires_grad_(False)
    return module


class DistillModule(TaskModule):
    """Train the RGB student `model` on the task with distillation objectives from frozen
    teachers.

    Args:
        model: the RGB student (`ActionModel`, `DecomposedStudent`, ...), named as the
            TeacherModule names its model, so that a distillation config composes after its
            RGB baseline's config and adds only teachers, objectives and what the data loads.
        task: the task family (loss, decoding, metrics).
        teachers: teacher name -> TeacherModule checkpoint path; objectives refer to the names.
        objectives: distillation terms (`lightning_modules.distillation`) by name, each with its
            weight; the name is how the term is logged (`train/<name>`) and set from the
            command line (`--model.init_args.objectives.<name>.init_args.weight=0`).
        task_weight: weight of the ground-truth task loss (Radevski et al.'s lambda_GT).
        lr, weight_decay, warmup_epochs, schedule, predictions_dir: as for TeacherModule.
        teacher_mode: `online` runs the teachers on every training batch (their inputs must be
            loaded); `cached` reads their outputs from the teacher cache (only the student's
            inputs need loading, e.g. `load: [rgb]`).
        teacher_cache: the cache folder (`<teacher_cache>/<teacher name>/`, relative to the
            working directory), as written by `crossdistill cache-teachers` with this run's
            configs.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        teachers: dict[str, str],
        objectives: dict[str, Objective],
        task_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        schedule: Literal["cosine", "linear"] = "cosine",
        predictions_dir: str | None = None,
        teacher_mode: Literal["online", "cached"] = "online",
        teacher_cache: str = "outputs/teacher_cache",
    ) -> None:
        super().__init__(task, lr, weight_decay, warmup_epochs, schedule, predictions_dir)
        self.save_init_args()
        self.model = model
        self.objectives = nn.ModuleDict(named_objectives(objectives))
        self.task_weight = task_weight
        if teacher_mode not in ("online", "cached"):
            raise ValueError(f"teacher_mode must be online or cached, got {teacher_mode!r}")
        self.teacher_mode = teacher_mode
        self.teacher_checkpoints = dict(teachers)
        self.teacher_cache = teacher_cache
        self.cache_layouts: dict[str, list] = {}
        # a plain dict keeps the teachers out of parameters(), state_dict() and train()
        self.teachers: dict[str, nn.Module] = {}
        self.teacher_held_out_digests: dict[str, str | None] = {}
        self.teacher_class_names: dict[str, Any] = {}
        if teacher_mode == "online":
            for name, path in teachers.items():
                module = load_teacher_module(path)
                self.teachers[name] = module.model
                self.teacher_held_out_digests[name] = module.held_out_digest
                self.teacher_class_names[name] = getattr(module, "recorded_class_names", None)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        self.check_teacher_classes()
        self.check_teacher_inputs(datamodule)
        if stage == "fit" and hasattr(datamodule, "include_held_out_in_training"):
            # only the teachers are trained without the held-out videos (Radevski et al.)
            datamodule.include_held_out_in_training()
        if self.teacher_mode == "cached" and stage == "fit":
            self.attach_teacher_caches(datamodule)

    def check_teacher_inputs(self, datamodule: Any) -> None:
        """Refuse an online teacher whose modalities the data does not load (e.g. a pose
        teacher's checkpoint given as `teachers.flow`), naming it, before the first batch."""
        loaded = getattr(datamodule, "modalities", None)
        if loaded is None:
            return
        for name, teacher in self.teachers.items():
            reads = teacher_modalities(teacher)
            if missing := sorted(set(reads) - set(loaded)):
                raise TeacherMismatchError(
                    f"teacher {name!r} ({self.teacher_checkpoints[name]}) reads {reads}, but the "
                    f"data loads {sorted(loaded)}: {missing} missing. Fix: point teachers.{name} "
                    f"at the checkpoint of a teacher on the loaded modalities, or add {missing} "
                    "to data.init_args.load"
                )

    def check_teacher_classes(self) -> None:
        """Refuse a teacher trained with other classes, or another class order: its logits
        would be distilled class for class into the wrong classes."""
        data = plain_class_names(self.class_names)
        for name, recorded in self.teacher_class_names.items():
            if recorded is None:
                log.warning(
                    "teacher %r (%s) records no class names (an older checkpoint): its logits "
                    "are taken to be in the data's class order",
                    name,
                    self.teacher_checkpoints[name],
                )
            elif recorded != data:
                raise TeacherMismatchError(
                    f"teacher {name!r} ({self.teacher_checkpoints[name]}) was trained on the "
                    f"classes {_first_difference(recorded, data)}. Fix: train it with the "
                    "student's annotations and class list, or give the student those of the "
                    "teacher"
                )

    def attach_teacher_caches(self, datamodule: Any) -> None:
        """Check every teacher's cache and add it to the training data (before training)."""
        if not hasattr(datamodule, "attach_source"):
            raise TypeError("teacher_mode: cached reads the cache through MultimodalDataModule")
        taps = objective_taps(self.objectives.values())
        for name, checkpoint in self.teacher_checkpoints.items():
            folder = Path(self.teacher_cache).resolve() / name
            source = open_cache(name, checkpoint, datamodule, folder, taps)
            datamodule.attach_source(cache_modality(name), source)
            self.cache_layouts[name] = source.manifest["layout"]

    def on_train_start(self) -> None:
        pending = [o for o in self.objectives.values() if o.needs_held_out_split]
        if pending:
            self.fit_held_out(pending)

    def fit_held_out(self, objectives: list[Objective]) -> None:
        """Show the frozen teachers the held-out training videos once, before the first step,
        and let each objective fit itself on them (Radevski et al.'s held-out teacher weights).

        Every teacher must have been trained without those videos: its checkpoint records the
        held-out part of its data (`held_out_digest`), which must be the student's.

        The split is sharded over DDP ranks; the statistics are sums, reduced over ranks, so
        every rank fits the same values. Each fitted value is logged as
        `held_out/<objective>/<teacher>`.
        """
        names = ", ".join(o.name for o in objectives)
        if self.teacher_mode != "online":
            raise ValueError(
                f"objectives {names} fit on held-out data, which needs the teachers run online. "
                "Fix: set model.init_args.teacher_mode: online"
            )
        datamodule = self.trainer.datamodule
        loader = datamodule.held_out_dataloader()
        saw = [
            f"{name} ({self.teacher_checkpoints[name]})"
            for objective in objectives
            for name in objective.select(self.teachers)
            if self.teacher_held_out_digests.get(name) != datamodule.held_out_digest
        ]
        if saw:
            raise ValueError(
                f"objectives {names} fit on the held-out training videos, but teachers "
                f"{sorted(set(saw))} were not trained without exactly those videos. Fix: train "
                "each teacher with the student's annotations, training subset and "
                f"data.init_args.held_out_fraction={datamodule.held_out_fraction}"
            )
        totals: list[torch.Tensor | None] = [None] * len(objectives)
        for batch in loader:
            batch = self.trainer.strategy.batch_to_device(batch)
            teachers = self.teacher_outputs(batch)
            for i, objective in enumerate(objectives):
                part = objective.held_out_statistics(teachers, batch).double()
                totals[i] = part if totals[i] is None else totals[i] + part
        classes = datamodule.class_names
        heads = list(classes) if isinstance(classes, Mapping) else [""]
        for objective, total in zip(objectives, totals, strict=True):
            if total is None:  # this rank's shard of the split was empty
                size = len(heads) * len(objective.select(self.teachers)) + 1
                total = torch.zeros(size, dtype=torch.double)
            total = self.trainer.strategy.reduce(total.to(self.device), reduce_op="sum")
            fitted = objective.fit_held_out(total.cpu(), list(self.teachers), heads)
            for key, value in fitted.items():
                self.log(f"held_out/{objective.name}/{key}", value, rank_zero_only=True)

    def teacher_outputs(self, batch: dict[str, Any]) -> dict[str, ModelOutput]:
        """Every teacher's outputs on the batch: run now (online) or read from the batch."""
        if self.teacher_mode == "cached":
            if not self.cache_layouts:
                raise RuntimeError(
                    "teacher_mode: cached, but no teacher cache is attached: the trainer does "
                    "it in setup('fit'); by hand, call attach_teacher_caches(datamodule) first"
                )
            return {
                name: unpack(batch["inputs"][cache_modality(name)], layout, batch["mask"])
                for name, layout in self.cache_layouts.items()
            }
        outputs = {}
        with torch.no_grad():
            for name, teacher in self.teachers.items():
                if next(teacher.parameters()).device != self.device:
                    teacher.to(self.device)
                outputs[name] = teacher(batch["inputs"], batch["mask"])
        return outputs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        student = self(batch)
        teachers = self.teacher_outputs(batch)
        task_losses = self.task.loss(student, batch)
        terms = {f"task_{k}" if k != "loss" else "task": v for k, v in task_losses.items()}
        total = self.task_weight * task_losses["loss"]
        for objective in self.objectives.values():
            value = objective(student, teachers, batch)
            terms[objective.name] = value
            total = total + objective.weight * value
        terms["loss"] = total
        self.log_loss_terms(terms, batch)
        return total
