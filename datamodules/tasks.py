"""The data side of each task, declared once: the one place the config's `task:` name is read.

`data.init_args.task` names a `TaskData` of `TASK_DATA`; the datamodule looks it up once and
the dataset, collate and sampler choice ask it instead of switching on the name. The model side
of the same task (loss, metrics, prediction files) is a `lightning_modules.tasks.Task`, which
points at its `TaskData` (`Task.data`), so a new task is one `TaskData` here (registered) and
one `Task` there. Targets per task, batched (`batch["targets"]`):

    dense:    {"frames": (B, T, K) float multi-hot}
    segments: {"segments": [(N_i, 3) [start_s, end_s, class]]}  (seconds from the window's t0)
    clips:    {"clip": (B,) long, or {"verb": (B,), "noun": (B,)}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import AnnotationSet
from datamodules.sampling import Window
from datamodules.sources.base import DataError

ClassNames = Sequence[str] | Mapping[str, Sequence[str]]
"""Class names of the head(s) in target-index order: one list, or one per head (verb/noun)."""


@dataclass(frozen=True)
class Labels:
    """Target index of each label: `classes` (already swapped for a mirrored sample), and the
    verb and noun vocabularies of verb/noun clips (empty otherwise)."""

    classes: Mapping[str, int]
    verbs: Mapping[str, int]
    nouns: Mapping[str, int]


class TaskData:
    """What a task asks of the data: its windows, a window's targets, their batching, heads."""

    kind: ClassVar[str]
    """The config's name (`data.init_args.task`), the key of `TASK_DATA`."""
    per_clip: ClassVar[bool] = False
    """One window per annotated clip (`ClipWindows`), instead of windows over whole videos
    (random training windows, evaluation tiles, or one window per video)."""

    def targets(self, window: Window, mask: Tensor, labels: Labels) -> dict[str, Any]:
        """A sample's targets from its first window and that window's valid-step mask `(T,)`."""
        raise NotImplementedError

    def collate(self, targets: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
        """The batch's targets from the samples', time axes padded to `steps`."""
        raise NotImplementedError

    def class_names(self, annotations: AnnotationSet) -> ClassNames:
        """Names of the classes of the head(s), in target-index order."""
        return annotations.classes


Declaration = TypeVar("Declaration", bound=TaskData)
TASK_DATA: dict[str, TaskData] = {}


def registered(declaration: Declaration) -> Declaration:
    """Add a task's data side to `TASK_DATA` under its `kind`, and return it."""
    TASK_DATA[declaration.kind] = declaration
    return declaration


def task_data(kind: str) -> TaskData:
    """The data side of the task the config names; a name not registered is a `DataError`."""
    if kind not in TASK_DATA:
        raise DataError(
            f"data.init_args.task is {kind!r}, which is not a task. Fix: use one of "
            f"{sorted(TASK_DATA)}"
        )
    return TASK_DATA[kind]


class DenseData(TaskData):
    """Per-step multi-hot targets: class k at step i when a k segment covers the step's instant
    (padding steps are all zero)."""

    kind = "dense"

    def targets(self, window: Window, mask: Tensor, labels: Labels) -> dict[str, Any]:
        times = window.grid.times()
        frames = np.zeros((window.grid.steps, len(labels.classes)), dtype=np.float32)
        for segment in window.record.segments:
            inside = (times >= segment.start) & (times < segment.end)
            frames[inside, labels.classes[segment.label]] = 1.0
        return {"frames": torch.from_numpy(frames) * mask.unsqueeze(1)}

    def collate(self, targets: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
        return {"frames": torch.stack([pad(t["frames"], 0, steps) for t in targets])}


class SegmentData(TaskData):
    """The `(N, 3)` segments overlapping the window, clipped to it, in seconds from `t0`."""

    kind = "segments"

    def targets(self, window: Window, mask: Tensor, labels: Labels) -> dict[str, Any]:
        length = window.grid.t1 - window.grid.t0
        rows = []
        for segment in window.record.segments:
            start = max(segment.start - window.grid.t0, 0.0)
            end = min(segment.end - window.grid.t0, length)
            if end > start:
                rows.append((start, end, float(labels.classes[segment.label])))
        return {"segments": torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)}

    def collate(self, targets: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
        return {"segments": [t["segments"] for t in targets]}


class ClipData(TaskData):
    """The annotated clip's class, or its verb and noun (EPIC-KITCHENS) when the annotations
    have those vocabularies; windows are the clips."""

    kind = "clips"
    per_clip = True

    def targets(self, window: Window, mask: Tensor, labels: Labels) -> dict[str, Any]:
        clip = window.clip
        if clip is None:
            raise ValueError("the clips task needs windows from ClipWindows")
        if labels.verbs:
            return {
                "clip": {
                    "verb": torch.tensor(labels.verbs[str(clip.verb)]),
                    "noun": torch.tensor(labels.nouns[str(clip.noun)]),
                }
            }
        return {"clip": torch.tensor(labels.classes[clip.label])}

    def collate(self, targets: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
        clips = [t["clip"] for t in targets]
        if isinstance(clips[0], dict):
            return {"clip": {head: torch.stack([c[head] for c in clips]) for head in clips[0]}}
        return {"clip": torch.stack(clips)}

    def class_names(self, annotations: AnnotationSet) -> ClassNames:
        if annotations.verb_classes:
            return {"verb": annotations.verb_classes, "noun": annotations.noun_classes}
        return annotations.classes


class Untargeted(TaskData):
    """No targets: the whole-video passes (features, teacher caches) run a frozen model over
    windows of any task's data. Not a config task, so not registered."""

    kind = ""

    def targets(self, window: Window, mask: Tensor, labels: Labels) -> dict[str, Any]:
        return {}

    def collate(self, targets: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
        return {}


DENSE = registered(DenseData())
SEGMENTS = registered(SegmentData())
CLIPS = registered(ClipData())


def pad(tensor: Tensor, axis: int, length: int) -> Tensor:
    """`tensor` zero-padded along `axis` to `length`."""
    missing = length - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=axis)
