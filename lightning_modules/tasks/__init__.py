"""Task families: each owns its loss on `ModelOutput` and its decoding into metric inputs."""

from lightning_modules.tasks.base import Task
from lightning_modules.tasks.clips import ClipTask
from lightning_modules.tasks.dense import DenseTask
from lightning_modules.tasks.segments import SegmentTask

__all__ = ["ClipTask", "DenseTask", "SegmentTask", "Task"]
