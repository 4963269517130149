"""One record model for every benchmark's annotations, and a reader per file format.

Every reader returns an `AnnotationSet`: the label vocabulary of the dataset and one
`VideoRecord` per video, with times in seconds whatever unit the file uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    """One annotated action instance; times in seconds."""

    label: str
    start: float
    end: float
    verb: str | None = None
    noun: str | None = None


@dataclass(frozen=True)
class VideoRecord:
    """A video (or a trimmed clip) and its annotations."""

    video_id: str
    subset: str
    duration: float | None
    segments: tuple[Segment, ...] = ()
    fps: float | None = None
    clip_label: str | None = None


@dataclass(frozen=True)
class AnnotationSet:
    """A dataset's vocabulary and videos, read from `source`."""

    classes: tuple[str, ...]
    records: dict[str, VideoRecord] = field(default_factory=dict)
    source: Path | None = None
