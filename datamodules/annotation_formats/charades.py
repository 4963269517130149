"""Charades CSV (`Charades_v1_{train,test}.csv`) with its class list (`Charades_v1_classes.txt`).

Columns: `id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length`.
Free-text fields are double-quoted and may hold commas; `actions` is `cXXX start end` entries
joined by `;` (seconds, possibly empty); `length` is the video's duration in seconds. The
synthetic benchmark writes one CSV per subset in this format.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.annotation_formats.common import (
    Vocabulary,
    annotation_error,
    check_span,
    class_list,
    csv_rows,
    number,
    require_file,
    sorted_segments,
    subset_from_filename,
)
from datamodules.annotations import AnnotationSet, Segment, VideoRecord

REQUIRED_COLUMNS = ("id", "actions", "length")


def read_charades(
    path: str | Path, classes_file: str | Path | None = None, subset: str | None = None
) -> AnnotationSet:
    """Read one Charades CSV; labels are the class names of `classes_file` (`c000 Holding ...`).

    A CSV holds one split, so `subset` defaults to the file name's last word
    (`Charades_v1_train.csv` -> `train`), and `classes_file` to the same name with `classes`
    for that word (`Charades_v1_classes.txt`; the synthetic `charades_classes.txt`).
    """
    path = require_file(path, "Charades CSV", "check the path of the Charades_v1_<split>.csv file")
    split = subset_from_filename(path)
    classes_path = (
        Path(classes_file)
        if classes_file is not None
        else path.with_name(f"{path.stem.removesuffix(split)}classes.txt")
    )
    vocabulary = _classes(classes_path)
    subset = subset if subset is not None else split
    records, lines = {}, {}
    for line, row in csv_rows(path, REQUIRED_COLUMNS):
        vid = row["id"]
        if vid in records:
            raise annotation_error(
                path,
                f"the video is listed twice (lines {lines[vid]} and {line}), so one row would "
                "be dropped",
                "keep one row per video",
                video=vid,
                line=line,
            )
        lines[vid] = line
        duration = number(row["length"], path, "length", video=vid, line=line)
        records[vid] = VideoRecord(
            video_id=vid,
            subset=subset,
            duration=duration,
            segments=_actions(path, vid, row["actions"], vocabulary, line),
        )
    return AnnotationSet(vocabulary.names, records, path)


def _classes(path: Path) -> Vocabulary:
    """The class names, in file order, referred to by their `cXXX` keys."""
    fix = "put the class list (`c000 <name>` lines) next to the CSV, or pass classes_file="
    names_by_key: dict[str, str] = {}
    for line_no, key, name in class_list(path, fix):
        if key in names_by_key:
            raise annotation_error(path, f"class {key} appears twice", fix, line=line_no)
        names_by_key[key] = name
    return Vocabulary(names_by_key.values(), path.name, names_by_key)


def _actions(
    path: Path, vid: str, actions: str, vocabulary: Vocabulary, line: int
) -> tuple[Segment, ...]:
    """Parse `c092 11.90 21.20;c147 0.00 12.60` (or an empty string)."""
    segments = []
    for action in filter(None, (a.strip() for a in actions.split(";"))):
        fields = action.split()
        if len(fields) != 3:
            raise annotation_error(
                path,
                f"action {action!r} is not `cXXX start end`",
                "correct the actions field",
                video=vid,
                line=line,
            )
        key, start_text, end_text = fields
        label = vocabulary.name_of(key, path, video=vid, line=line)
        start = number(start_text, path, "action start", video=vid, line=line)
        end = number(end_text, path, "action end", video=vid, line=line)
        check_span(start, end, "s", path, video=vid, line=line)
        segments.append(Segment(label, start, end))
    return sorted_segments(segments)
