"""DistillModule: an RGB student trained with frozen teachers.

Teachers come from TeacherModule checkpoints and are frozen by construction: `eval()`, no
gradients, held outside the module tree, so they are never in the optimiser, never moved to
train mode by Lightning, and never written into the student's checkpoint. The training loss is
`task_weight * task loss + sum(objective.weight * objective)`, every term logged by name;
evaluation runs the student alone, exactly as a TeacherModule would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lightning_modules.distillation import Objective
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.task_module import TaskModule
from lightning_modules.tasks import Task


def load_frozen_teacher(checkpoint: str | Path) -> nn.Module:
    """The model of a TeacherModule checkpoint, in eval mode with gradients off."""
    from lightning_modules.teacher import TeacherModule

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {path} does not exist. Fix: train the teacher first "
            "(crossdistill fit --config configs/teacher/...) and point teachers.<name> at its .ckpt"
        )
    model = TeacherModule.load_from_checkpoint(path, map_location="cpu").model
    model.eval()
    model.requires_grad_(False)
    return model


class DistillModule(TaskModule):
    """Train `student` on the task with distillation objectives from frozen teachers.

    Args:
        student: the RGB model (`ActionModel`, `DecomposedStudent`, ...).
        task: the task family (loss, decoding, metrics).
        teachers: teacher name -> TeacherModule checkpoint path; objectives refer to the names.
        objectives: distillation terms (`lightning_modules.distillation`), each with its weight.
        task_weight: weight of the ground-truth task loss (Radevski et al.'s lambda_GT).
        lr, weight_decay, warmup_epochs, schedule, predictions_dir: as for TeacherModule.
    """

    def __init__(
        self,
        student: nn.Module,
        task: Task,
        teachers: dict[str, str],
        objectives: list[Objective],
        task_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        schedule: Literal["cosine", "linear"] = "cosine",
        predictions_dir: str | None = None,
    ) -> None:
        super().__init__(task, lr, weight_decay, warmup_epochs, schedule, predictions_dir)
        self.save_init_args()
        self.model = student
        self.objectives = nn.ModuleList(objectives)
        names = [objective.name for objective in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique to be logged apart: {names}")
        self.task_weight = task_weight
        # a plain dict keeps the teachers out of parameters(), state_dict() and train()
        self.teachers: dict[str, nn.Module] = {
            n: load_frozen_teacher(p) for n, p in teachers.items()
        }

    def teacher_outputs(self, batch: dict[str, Any]) -> dict[str, ModelOutput]:
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
        for objective in self.objectives:
            value = objective(student, teachers, batch)
            terms[objective.name] = value
            total = total + objective.weight * value
        terms["loss"] = total
        self.log_dict(
            {f"train/{k}": v for k, v in terms.items()}, batch_size=self.batch_size(batch)
        )
        return total
