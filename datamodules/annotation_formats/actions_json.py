"""The `{video: {subset, duration, actions: [[class, start, end]]}}` JSON of MultiTHUMOS and TSU.

Super-events (MultiTHUMOS) and the Toyota Smarthome pipeline (TSU) share this layout but not its
units: MultiTHUMOS writes seconds and numbers its classes from 1, TSU writes frames and numbers
from 0. `read_multithumos` and `read_tsu` fix those; this module reads the shared layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.annotation_formats.common import (
    Vocabulary,
    annotation_error,
    check_span,
    load_json,
    number,
    sorted_segments,
)
from datamodules.annotations import AnnotationSet, Segment, VideoRecord


def read_actions_json(path: Path, vocabulary: Vocabulary, fps: float | None) -> AnnotationSet:
    """Read the shared layout; times are seconds when `fps` is None, else frames at `fps`."""
    data = load_json(path, "annotation file", "check the path of the annotation JSON")
    if not isinstance(data, dict):
        raise annotation_error(
            path, "the top level is not an object", "give a {video_id: {...}} JSON object"
        )
    records = {
        str(vid): _record(path, str(vid), entry, vocabulary, fps) for vid, entry in data.items()
    }
    return AnnotationSet(vocabulary.names, records, path)


def _record(
    path: Path, vid: str, entry: Any, vocabulary: Vocabulary, fps: float | None
) -> VideoRecord:
    actions = entry.get("actions") if isinstance(entry, dict) else None
    if not isinstance(actions, list) or not isinstance(entry.get("subset"), str):
        raise annotation_error(
            path,
            'entry lacks a "subset" string or an "actions" list',
            "give every video a subset and a list of [class, start, end] actions",
            video=vid,
        )
    unit = "s" if fps is None else "frames"
    segments = []
    for action in actions:
        if not isinstance(action, list) or len(action) != 3:
            raise annotation_error(
                path,
                f"action {action!r} is not [class, start, end]",
                "correct the action",
                video=vid,
            )
        label = vocabulary.name_of(action[0], path, video=vid)
        start = number(action[1], path, "action start", video=vid)
        end = number(action[2], path, "action end", video=vid)
        check_span(start, end, unit, path, video=vid)
        segments.append(Segment(label, _seconds(start, fps), _seconds(end, fps)))
    return VideoRecord(
        video_id=vid,
        subset=entry["subset"],
        duration=_seconds(number(entry.get("duration"), path, "duration", video=vid), fps),
        segments=sorted_segments(segments),
        fps=fps,
    )


def _seconds(time: float, fps: float | None) -> float:
    return time if fps is None else time / fps
