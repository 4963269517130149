"""Loading frozen teachers: check that a file is a TeacherModule checkpoint, load it, freeze it,
and refuse a teacher that cannot teach this student (other classes, other inputs).

Teachers are frozen by construction: `eval()`, no gradients, and held by their provider outside
the student's module tree, so they are never in the optimiser, never moved to train mode by
Lightning, and never written into the student's checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_modules.export import without_pretrained
from lightning_modules.models.encoder import ModalityEncoder
from lightning_modules.runs.checkpoint_io import DamagedCheckpointError, check_checkpoint_file
from lightning_modules.task_module import CheckpointMismatchError, plain_class_names
from lightning_modules.teacher import TeacherModule

log = logging.getLogger(__name__)


class TeacherMismatchError(CheckpointMismatchError):
    """A teacher checkpoint that cannot teach this student; the message names it and the fix."""


TRAIN_A_TEACHER = (
    "Fix: point teachers.<name> at the checkpoint of a teacher run, "
    "RUN_DIR/checkpoints/best.ckpt of `crossdistill fit --config configs/teacher/...`"
)


def check_teacher_file(path: Path) -> dict[str, Any]:
    """Refuse, naming the file, what it is and the fix, anything that is not a TeacherModule
    checkpoint: a text file, a student export, a distilled student's checkpoint. Returns the
    checkpoint (memory-mapped)."""
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
    return checkpoint


def load_teacher_module(checkpoint: str | Path) -> TeacherModule:
    """A TeacherModule checkpoint with its model frozen (eval mode, gradients off); the module
    also carries what the checkpoint records of its training data (`held_out_digest`)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {path} does not exist. Fix: train the teacher first "
            "(crossdistill fit --config configs/teacher/...) and point teachers.<name> at its .ckpt"
        )
    model = check_teacher_file(path)["hyper_parameters"].get("model")
    # the checkpoint holds every weight: a backbone's `pretrained` file is not read again
    rebuilt = {"model": without_pretrained(model)} if isinstance(model, Mapping) else {}
    module = TeacherModule.load_from_checkpoint(path, map_location="cpu", **rebuilt)
    module.model.eval()
    module.model.requires_grad_(False)
    return module


def load_frozen_teacher(checkpoint: str | Path) -> nn.Module:
    """The model of a TeacherModule checkpoint, in eval mode with gradients off."""
    return load_teacher_module(checkpoint).model


def teacher_modalities(model: nn.Module) -> list[str]:
    """The modalities a model reads: those of its modality encoders."""
    found = sorted({m.modality for m in model.modules() if isinstance(m, ModalityEncoder)})
    if not found:
        raise ValueError("the teacher has no modality encoder, so its inputs are unknown")
    return found


def check_teacher_inputs(
    name: str, checkpoint: str, teacher: nn.Module, loaded: Sequence[str] | None
) -> None:
    """Refuse a teacher whose modalities the data does not load (e.g. a pose teacher's
    checkpoint given as `teachers.flow`), naming it, before the first batch."""
    if loaded is None:
        return
    reads = teacher_modalities(teacher)
    if missing := sorted(set(reads) - set(loaded)):
        raise TeacherMismatchError(
            f"teacher {name!r} ({checkpoint}) reads {reads}, but the data loads "
            f"{sorted(loaded)}: {missing} missing. Fix: point teachers.{name} at the checkpoint "
            f"of a teacher on the loaded modalities, or add {missing} to data.init_args.load"
        )


def check_teacher_classes(name: str, checkpoint: str, recorded: Any, class_names: Any) -> None:
    """Refuse a teacher trained with other classes, or another class order: its logits would be
    distilled class for class into the wrong classes."""
    data = plain_class_names(class_names)
    if recorded is None:
        log.warning(
            "teacher %r (%s) records no class names (an older checkpoint): its logits are taken "
            "to be in the data's class order",
            name,
            checkpoint,
        )
    elif recorded != data:
        raise TeacherMismatchError(
            f"teacher {name!r} ({checkpoint}) was trained on the classes "
            f"{_first_difference(recorded, data)}. Fix: train it with the student's annotations "
            "and class list, or give the student those of the teacher"
        )


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
