"""EPIC-KITCHENS-100 action annotations: `EPIC_100_{train,validation}.csv` and their side files.

Each narration becomes a `Segment` with `verb` and `noun` set to the class keys of
`EPIC_100_verb_classes.csv` and `EPIC_100_noun_classes.csv` (looked up by `verb_class` and
`noun_class`: the free-text `verb`/`noun` columns are annotator words such as `put-down`), and
`label` = `"<verb> <noun>"`, e.g. `"put plate"`: the action, the pair the action metrics score.

Times come from `start_timestamp`/`stop_timestamp` (`HH:MM:SS.ff`). The `start_frame` and
`stop_frame` columns are not used: they count the released RGB frames, which run at 60 fps for
the videos recorded at 59.94, 29.97, 47.95 or 90 fps (checked against the timestamps of the
validation file), so they disagree with the video's own rate by up to 3 minutes. Durations and
frame rates come from `EPIC_100_video_info.csv`: the video's own rate, the one a decoder sees.
"""

from __future__ import annotations

import re
from pathlib import Path

from datamodules.annotation_formats.common import (
    Vocabulary,
    annotation_error,
    check_span,
    csv_rows,
    number,
    require_file,
    sorted_segments,
    subset_from_filename,
)
from datamodules.annotations import AnnotationSet, Segment, VideoRecord

COLUMNS = ("video_id", "start_timestamp", "stop_timestamp", "verb_class", "noun_class")
_TIMESTAMP = re.compile(r"(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)")
_FIX_SIDE_FILES = "put the EPIC_100 class and video_info CSVs next to the annotations, or pass them"


def read_epic_kitchens(
    path: str | Path,
    verb_classes: str | Path | None = None,
    noun_classes: str | Path | None = None,
    video_info: str | Path | None = None,
    subset: str | None = None,
) -> AnnotationSet:
    """Read an EPIC-KITCHENS-100 annotation CSV with its class and video-info CSVs.

    The side files default to `EPIC_100_verb_classes.csv`, `EPIC_100_noun_classes.csv` and
    `EPIC_100_video_info.csv` next to `path`; `subset` defaults to the file name's last word
    (`EPIC_100_validation.csv` -> `validation`). `verb_classes`/`noun_classes` of the result
    are the full vocabularies (97 and 300); `classes` lists the actions present in this file,
    sorted, since EPIC defines actions as verb-noun pairs rather than as a list.
    """
    path = require_file(path, "EPIC-KITCHENS CSV", "check the path of EPIC_100_<split>.csv")
    verbs = _class_vocabulary(_side_file(verb_classes, path.parent / "EPIC_100_verb_classes.csv"))
    nouns = _class_vocabulary(_side_file(noun_classes, path.parent / "EPIC_100_noun_classes.csv"))
    videos = _video_info(_side_file(video_info, path.parent / "EPIC_100_video_info.csv"))
    segments: dict[str, list[Segment]] = {}
    for line, row in csv_rows(path, COLUMNS):
        vid = row["video_id"]
        verb = verbs.name_of(row["verb_class"], path, video=vid, line=line)
        noun = nouns.name_of(row["noun_class"], path, video=vid, line=line)
        start = _seconds(row["start_timestamp"], path, vid, line)
        end = _seconds(row["stop_timestamp"], path, vid, line)
        check_span(start, end, "s", path, video=vid, line=line)
        segments.setdefault(vid, []).append(Segment(f"{verb} {noun}", start, end, verb, noun))
    subset = subset if subset is not None else subset_from_filename(path)
    records = {vid: _record(path, vid, subset, found, videos) for vid, found in segments.items()}
    actions = sorted({s.label for record in records.values() for s in record.segments})
    return AnnotationSet(tuple(actions), records, path, verbs.names, nouns.names)


def _side_file(given: str | Path | None, default: Path) -> Path:
    return require_file(given if given is not None else default, default.name, _FIX_SIDE_FILES)


def _record(
    path: Path,
    vid: str,
    subset: str,
    segments: list[Segment],
    videos: dict[str, tuple[float, float]],
) -> VideoRecord:
    if vid not in videos:
        raise annotation_error(
            path,
            "the video is not in the video_info CSV, so its duration and fps are unknown",
            "use the EPIC_100_video_info.csv of the same release",
            video=vid,
        )
    duration, fps = videos[vid]
    return VideoRecord(vid, subset, duration, sorted_segments(segments), fps)


def _class_vocabulary(path: Path) -> Vocabulary:
    """`id,key,...` rows with ids 0, 1, 2, ... -> class keys, referred to by id."""
    keys = []
    for line, row in csv_rows(path, ("id", "key")):
        if row["id"] != str(len(keys)):
            raise annotation_error(
                path,
                f"class id {row['id']!r} where {len(keys)} was expected",
                "use the class CSV as released: ids count from 0 without gaps",
                line=line,
            )
        keys.append(row["key"])
    return Vocabulary.numbered(keys, path.name, 0)


def _video_info(path: Path) -> dict[str, tuple[float, float]]:
    """video id -> (duration in seconds, frames per second)."""
    return {
        row["video_id"]: (
            number(row["duration"], path, "duration", video=row["video_id"], line=line),
            number(row["fps"], path, "fps", video=row["video_id"], line=line),
        )
        for line, row in csv_rows(path, ("video_id", "duration", "fps"))
    }


def _seconds(timestamp: str, path: Path, vid: str, line: int) -> float:
    """`HH:MM:SS.ff` -> seconds."""
    match = _TIMESTAMP.fullmatch(timestamp.strip())
    if match is None:
        raise annotation_error(
            path,
            f"timestamp {timestamp!r} is not HH:MM:SS.ff",
            "correct the timestamp",
            video=vid,
            line=line,
        )
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
