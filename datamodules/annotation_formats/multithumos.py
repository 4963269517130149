"""MultiTHUMOS as super-events publishes it (`multithumos.json`): seconds, classes 1-65."""

from __future__ import annotations

from pathlib import Path

from datamodules.annotation_formats.actions_json import read_actions_json
from datamodules.annotation_formats.common import numbers_or_class_list
from datamodules.annotations import AnnotationSet

NUM_CLASSES = 65
FIRST_CLASS = 1


def read_multithumos(path: str | Path, class_list: str | Path | None = None) -> AnnotationSet:
    """Read `multithumos.json`; actions are `[class, start_s, end_s]` with classes 1-65.

    `class_list` is MultiTHUMOS's `class_list.txt` (`1 BaseballPitch` ... `65 ...`). The JSON
    alone carries only class numbers, so without it the labels are those numbers as strings
    ("1" ... "65"); a number outside 1-65 is an error either way.
    """
    vocabulary = numbers_or_class_list(
        class_list,
        FIRST_CLASS,
        NUM_CLASSES,
        "MultiTHUMOS",
        "give class_list= the path of MultiTHUMOS class_list.txt",
    )
    return read_actions_json(Path(path), vocabulary, fps=None)
