"""Where a DistillModule's frozen teachers' outputs come from, behind one interface.

A `TeacherSource` is the config object (`model.init_args.teacher_source`): `Online` (the
default) runs the teachers on every training batch, whose inputs must then be loaded; `Cached`
reads their outputs from the teacher cache written by `crossdistill cache-teachers`
(`lightning_modules.teachers.cache`), so only the student's inputs need loading (e.g.
`load: [rgb]`). The source is plain settings; `TeacherSource.provider(checkpoints)` makes the
`TeacherProvider` that holds the loaded teachers or caches, so that the settings the module
records as a hyperparameter never carry teacher weights.

A provider checks what it serves when the module is set up (`setup`), before the first step,
and then answers `teacher_outputs(batch) -> {teacher name: ModelOutput}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_modules.models.outputs import ModelOutput
from lightning_modules.teachers.cache import cache_modality, open_cache, unpack
from lightning_modules.teachers.loading import (
    check_teacher_classes,
    check_teacher_inputs,
    load_teacher_module,
)


class TeacherProvider:
    """Every frozen teacher's outputs on a batch.

    Attributes:
        checkpoints: teacher name -> TeacherModule checkpoint path.
        models: the teachers this provider runs, frozen and outside any module tree (empty
            when their outputs are read from a cache).
        held_out_digests: per teacher, the fingerprint of the training videos it was trained
            without (None: it trained on all of them); filled for the teachers in `models`.
    """

    runs_teachers = False
    """Whether the teachers themselves run (needed to show them data other than the batches)."""

    def __init__(self, checkpoints: Mapping[str, str]) -> None:
        self.checkpoints = dict(checkpoints)
        self.models: dict[str, nn.Module] = {}
        self.held_out_digests: dict[str, str | None] = {}

    def setup(self, datamodule: Any, stage: str, class_names: Any) -> None:
        """Check the teachers against the data, before the first step (called by the module's
        `setup`, after the datamodule's)."""

    def teacher_outputs(self, batch: dict[str, Any]) -> dict[str, ModelOutput]:
        raise NotImplementedError


class OnlineTeachers(TeacherProvider):
    """The teachers loaded from their checkpoints, frozen, and run on every batch."""

    runs_teachers = True

    def __init__(self, checkpoints: Mapping[str, str]) -> None:
        super().__init__(checkpoints)
        self.class_names: dict[str, Any] = {}
        for name, path in self.checkpoints.items():
            module = load_teacher_module(path)
            self.models[name] = module.model
            self.held_out_digests[name] = module.held_out_digest
            self.class_names[name] = getattr(module, "recorded_class_names", None)

    def setup(self, datamodule: Any, stage: str, class_names: Any) -> None:
        """Refuse a teacher of other classes or class order, or one whose inputs the data does
        not load."""
        for name, recorded in self.class_names.items():
            check_teacher_classes(name, self.checkpoints[name], recorded, class_names)
        loaded = getattr(datamodule, "modalities", None)
        for name, teacher in self.models.items():
            check_teacher_inputs(name, self.checkpoints[name], teacher, loaded)

    def teacher_outputs(self, batch: dict[str, Any]) -> dict[str, ModelOutput]:
        device = batch["mask"].device
        outputs = {}
        with torch.no_grad():
            for name, teacher in self.models.items():
                if next(teacher.parameters()).device != device:
                    teacher.to(device)
                outputs[name] = teacher(batch["inputs"], batch["mask"])
        return outputs


class CachedTeachers(TeacherProvider):
    """The teachers' outputs read from their caches (`<folder>/<teacher name>/`), which
    `attach` checks and adds to the training data."""

    def __init__(self, checkpoints: Mapping[str, str], folder: str, taps: Sequence[str]) -> None:
        super().__init__(checkpoints)
        self.folder = folder
        self.taps = list(taps)
        self.layouts: dict[str, list] = {}

    def setup(self, datamodule: Any, stage: str, class_names: Any) -> None:
        if stage == "fit":
            self.attach(datamodule)

    def attach(self, datamodule: Any) -> None:
        """Check every teacher's cache against its checkpoint, the data config and the taps
        read, and add it to the training data as the modality `cache_modality(name)`.

        The datasets exist by then: Lightning sets the datamodule up before the module, and
        only the module knows its teachers. So this is the one place where a source is added to
        built datasets (`MultimodalDataModule.attach_source`), which checks it on every
        training video before the first step."""
        if not hasattr(datamodule, "attach_source"):
            raise TypeError("cached teachers are read through MultimodalDataModule")
        for name, checkpoint in self.checkpoints.items():
            folder = Path(self.folder).resolve() / name
            source = open_cache(name, checkpoint, datamodule, folder, self.taps)
            datamodule.attach_source(cache_modality(name), source)
            self.layouts[name] = source.manifest["layout"]

    def teacher_outputs(self, batch: dict[str, Any]) -> dict[str, ModelOutput]:
        if not self.layouts:
            raise RuntimeError(
                "cached teachers, but no teacher cache is attached: the trainer does it in "
                "setup('fit'); by hand, call teacher_provider.attach(datamodule) first"
            )
        return {
            name: unpack(batch["inputs"][cache_modality(name)], layout, batch["mask"])
            for name, layout in self.layouts.items()
        }


class TeacherSource:
    """Where the teachers' outputs come from: the setting of `teacher_source`."""

    def provider(self, checkpoints: Mapping[str, str], taps: Sequence[str]) -> TeacherProvider:
        """The provider of the teachers at `checkpoints`, for objectives reading `taps`."""
        raise NotImplementedError


class Online(TeacherSource):
    """Run the teachers on every training batch (their inputs must be loaded)."""

    def provider(self, checkpoints: Mapping[str, str], taps: Sequence[str]) -> TeacherProvider:
        return OnlineTeachers(checkpoints)


class Cached(TeacherSource):
    """Read the teachers' outputs from the teacher cache.

    Args:
        folder: the cache folder (`<folder>/<teacher name>/`, relative to the working
            directory), as written by `crossdistill cache-teachers` with this run's configs.
    """

    def __init__(self, folder: str = "outputs/teacher_cache") -> None:
        self.folder = folder

    def provider(self, checkpoints: Mapping[str, str], taps: Sequence[str]) -> TeacherProvider:
        return CachedTeachers(checkpoints, self.folder, taps)
