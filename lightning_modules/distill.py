"""DistillModule: an RGB student trained with frozen teachers.

The teachers come from TeacherModule checkpoints (`teachers: {name: ckpt}`) and reach the
student through one `TeacherProvider` (`lightning_modules.teachers`), chosen by the config
object `teacher_source`: `Online` (default) loads and freezes them and runs them on every
training batch; `Cached` reads their outputs from the teacher cache (`crossdistill
cache-teachers`), which it checks against each checkpoint and the data config when the fit sets
up, stopping a missing, stale or damaged cache before the first step with the command that
rebuilds it. Either way the teachers are frozen by construction and held outside the module
tree: never in the optimiser, never moved to train mode by Lightning, never written into the
student's checkpoint. The training loss is `task_weight * task loss + sum(objective.weight *
objective)`, every term logged by name; evaluation runs the student alone, exactly as a
TeacherModule would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from lightning_modules.distillation import Objective, named_objectives
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.task_module import Optimisation, TaskModule
from lightning_modules.tasks import Task
from lightning_modules.teachers import Online, TeacherSource
from lightning_modules.teachers.cache import objective_taps


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
        lr, weight_decay, warmup_epochs, schedule, predictions_dir, optimizer,
            backbone_lr_multiplier: as for TeacherModule.
        teacher_source: where the teachers' outputs come from:
            `lightning_modules.teachers.Online` (default, also for null) runs the teachers on
            every training batch (their inputs must be loaded);
            `lightning_modules.teachers.Cached` (`init_args: {folder: ...}`) reads them from
            the teacher cache (only the student's inputs need loading, e.g. `load: [rgb]`).
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
        teacher_source: TeacherSource | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        backbone_lr_multiplier: float = 1.0,
    ) -> None:
        settings = (lr, weight_decay, warmup_epochs, schedule, optimizer, backbone_lr_multiplier)
        super().__init__(task, Optimisation(*settings), predictions_dir)
        self.save_init_args()
        self.model = model
        self.objectives = nn.ModuleDict(named_objectives(objectives))
        self.task_weight = task_weight
        self.teacher_checkpoints = dict(teachers)
        taps = objective_taps(getattr(o, "tap", None) for o in self.objectives.values())
        source = Online() if teacher_source is None else teacher_source
        self.teacher_provider = source.provider(self.teacher_checkpoints, taps)

    @property
    def teachers(self) -> dict[str, nn.Module]:
        """The frozen teachers run by the provider (none when their outputs are cached); a plain
        dict, out of parameters(), state_dict() and train()."""
        return self.teacher_provider.models

    @property
    def teacher_held_out_digests(self) -> dict[str, str | None]:
        return self.teacher_provider.held_out_digests

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        if stage == "fit" and hasattr(datamodule, "include_held_out_in_training"):
            # only the teachers are trained without the held-out videos (Radevski et al.)
            datamodule.include_held_out_in_training()
        # after the training set is final: a cache source is attached to the built datasets
        self.teacher_provider.setup(datamodule, stage, self.class_names)

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
        if not self.teacher_provider.runs_teachers:
            raise ValueError(
                f"objectives {names} fit on held-out data, which needs the teachers run online. "
                "Fix: set model.init_args.teacher_source: lightning_modules.teachers.Online"
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
        """Every teacher's outputs on the batch, from the teacher provider."""
        return self.teacher_provider.teacher_outputs(batch)

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
