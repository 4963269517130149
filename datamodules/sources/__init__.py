"""Modality sources: each maps a video and a time grid to tensors (one class per modality).

| class            | files                               | output per sample                      |
|------------------|-------------------------------------|----------------------------------------|
| `VideoSource`    | mp4 (decord, or PyAV), frame folder | `(3, T, S, S)` RGB in [0, 1]           |
| `FlowSource`     | quantised flow mp4 or JPEG pairs, npy | `(2, T, S, S)` pixels / bound        |
| `KeypointSource` | npy `(frames, K, 3)`, named layouts | `(T, K, 3)` x, y in [0, 1], confidence |
| `BoxSource`      | per-video JSON                      | `(T, N, 6)` boxes and `(T, N)` mask    |
| `FeatureSource`  | npy `(T_file, D)` on a stride grid  | `(D, T)`                               |
| `TeacherCacheSource` | npy `(steps, D)`, a teacher's outputs | `(D, T)` (see `teacher_cache`)   |
"""

from datamodules.sources.base import DataError, Problem, Source
from datamodules.sources.boxes import BoxSource
from datamodules.sources.features import FeatureSource
from datamodules.sources.flow import FlowSource
from datamodules.sources.keypoints import KeypointSource
from datamodules.sources.teacher_cache import TeacherCacheSource
from datamodules.sources.video import VideoSource

__all__ = [
    "BoxSource",
    "DataError",
    "FeatureSource",
    "FlowSource",
    "KeypointSource",
    "Problem",
    "Source",
    "TeacherCacheSource",
    "VideoSource",
]
