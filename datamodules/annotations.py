"""One record model for every benchmark's annotations, and a reader per file format.

Every reader returns an `AnnotationSet`: the label vocabulary of the dataset and one
`VideoRecord` per video, with times in seconds whatever unit the file uses. The readers live in
`datamodules.annotation_formats` (one module per format) and are re-exported here;
`read_annotations(path, format, **options)` picks one by name, for configs.

Readers keep the files' quirks instead of repairing them (zero-length and duplicated ActivityNet
segments, segments ending past the video's duration): the evaluator decides what they count for.
What cannot be meant (an end before the start, a label outside the vocabulary, a malformed line)
is an `AnnotationError` that names the file, the video and the fix.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path


class AnnotationError(ValueError):
    """An annotation file that cannot be read as its format says; the message names the fix."""


@dataclass(frozen=True)
class Segment:
    """One annotated action instance (or one prediction, with `score`); times in seconds."""

    label: str
    start: float
    end: float
    verb: str | None = None
    noun: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class VideoRecord:
    """A video (or a trimmed clip) and its annotations; segments sorted by (start, end, label).

    `ambiguous` holds spans the annotators could not call action or background (THUMOS14's
    `Ambiguous` files); evaluators leave them out instead of counting them as a class.
    """

    video_id: str
    subset: str
    duration: float | None
    segments: tuple[Segment, ...] = ()
    fps: float | None = None
    clip_label: str | None = None
    ambiguous: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class AnnotationSet:
    """A dataset's vocabulary and videos, read from `source`.

    `classes` is the label vocabulary every `Segment.label` and `clip_label` belongs to;
    EPIC-KITCHENS also fills `verb_classes` and `noun_classes`, the vocabularies its
    recognition heads index.
    """

    classes: tuple[str, ...]
    records: dict[str, VideoRecord] = field(default_factory=dict)
    source: Path | None = None
    verb_classes: tuple[str, ...] = ()
    noun_classes: tuple[str, ...] = ()

    @property
    def subset_names(self) -> tuple[str, ...]:
        """The subsets present, in order of first appearance."""
        return tuple(dict.fromkeys(record.subset for record in self.records.values()))

    def subset(self, name: str) -> AnnotationSet:
        """The same vocabulary with only the videos of subset `name`.

        An absent subset is an error rather than an empty set, because a misspelt split name in a
        config would otherwise train or evaluate on nothing.
        """
        records = {vid: rec for vid, rec in self.records.items() if rec.subset == name}
        if not records:
            raise ValueError(
                f"no subset {name!r} in {self.source}; it has {list(self.subset_names)}. "
                "Fix: use one of these names in the config."
            )
        return replace(self, records=records)


# The readers build the classes above, so they are imported after them.
from datamodules.annotation_formats.activitynet import (  # noqa: E402
    ScoredSegments,
    label_id_names,
    read_activitynet,
    read_activitynet_results,
    read_results_table,
)
from datamodules.annotation_formats.charades import read_charades  # noqa: E402
from datamodules.annotation_formats.epic_kitchens import read_epic_kitchens  # noqa: E402
from datamodules.annotation_formats.multithumos import read_multithumos  # noqa: E402
from datamodules.annotation_formats.pku_mmd import read_pku_mmd  # noqa: E402
from datamodules.annotation_formats.something_something import (  # noqa: E402
    read_something_something,
)
from datamodules.annotation_formats.thumos14 import read_thumos14_txt  # noqa: E402
from datamodules.annotation_formats.tsu import read_tsu  # noqa: E402

READERS: dict[str, Callable[..., AnnotationSet]] = {
    "activitynet": read_activitynet,
    "charades": read_charades,
    "epic_kitchens": read_epic_kitchens,
    "multithumos": read_multithumos,
    "pku_mmd": read_pku_mmd,
    "something_something": read_something_something,
    "thumos14_txt": read_thumos14_txt,
    "tsu": read_tsu,
}


def read_annotations(
    path: str | Path, format: str, root: str | Path | None = None, **options: object
) -> AnnotationSet:
    """Read `path` with the reader registered as `format` (a config names formats by string).

    Options that are file paths in the reader's signature (`classes_file`, `class_list`,
    `verb_classes`, ...) and are given relative are taken under `root`, as the annotation files
    themselves are.
    """
    if format not in READERS:
        raise ValueError(f"unknown annotation format {format!r}; known formats: {sorted(READERS)}")
    reader = READERS[format]
    if root is not None:
        options = {key: _under(root, value, reader, key) for key, value in options.items()}
    return reader(path, **options)


def _under(
    root: str | Path, value: object, reader: Callable[..., AnnotationSet], key: str
) -> object:
    """`value` under `root` when the reader's parameter `key` takes a path and it is relative."""
    parameter = inspect.signature(reader).parameters.get(key)
    takes_path = parameter is not None and "Path" in str(parameter.annotation)
    if takes_path and isinstance(value, (str, Path)) and not Path(value).is_absolute():
        return Path(root) / value
    return value


__all__ = [
    "READERS",
    "AnnotationError",
    "AnnotationSet",
    "ScoredSegments",
    "Segment",
    "VideoRecord",
    "label_id_names",
    "read_activitynet",
    "read_activitynet_results",
    "read_annotations",
    "read_charades",
    "read_epic_kitchens",
    "read_multithumos",
    "read_pku_mmd",
    "read_results_table",
    "read_something_something",
    "read_thumos14_txt",
    "read_tsu",
]
