"""THUMOS14's original annotations: one `<Class>_<split>.txt` per class and split.

Each line is `video start end` in seconds. `Ambiguous_<split>.txt` is not a class: it marks spans
the annotators could not call action or background, which evaluators leave out; they go to
`VideoRecord.ambiguous`. (The JSON that TAD toolkits use is read by `read_activitynet`.)
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from datamodules.annotation_formats.common import (
    annotation_error,
    check_span,
    number,
    sorted_segments,
)
from datamodules.annotations import AnnotationSet, Segment, VideoRecord

# Folder suffix -> subset name, named as in the ActionFormer JSON so both readers agree.
SUBSETS = {"val": "Validation", "test": "Test"}
AMBIGUOUS = "Ambiguous"


def read_thumos14_txt(root: str | Path) -> AnnotationSet:
    """Read `root/annotations_{val,test}/<Class>_{val,test}.txt` (either split may be absent)
    into subsets `Validation` and `Test`, as the ActionFormer JSON names them.

    The vocabulary is the set of class files, which must be the same in both splits: a class
    file missing from one is an incomplete download, not a smaller dataset. The files carry no
    durations or frame rates, so those are None.
    """
    root = Path(root)
    folders = {
        s: root / f"annotations_{s}" for s in SUBSETS if (root / f"annotations_{s}").is_dir()
    }
    if not folders:
        raise FileNotFoundError(
            f"no THUMOS14 annotation folder in {root}. Fix: give the folder that holds "
            "annotations_val/ and annotations_test/"
        )
    segments: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    ambiguous: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    classes_by_split = {}
    for split, folder in folders.items():
        class_files = {
            p.name.removesuffix(f"_{split}.txt"): p for p in folder.glob(f"*_{split}.txt")
        }
        classes_by_split[split] = set(class_files) - {AMBIGUOUS}
        if not classes_by_split[split]:
            raise FileNotFoundError(
                f"no <Class>_{split}.txt files in {folder}. Fix: download the annotations again"
            )
        for label, class_file in class_files.items():
            target = ambiguous if label == AMBIGUOUS else segments
            for vid, segment in _read_class_file(class_file, label):
                target[SUBSETS[split], vid].append(segment)
    classes = _same_classes(root, classes_by_split)
    records = {
        vid: VideoRecord(
            vid,
            subset,
            None,
            sorted_segments(segments.get((subset, vid), ())),
            ambiguous=sorted_segments(ambiguous.get((subset, vid), ())),
        )
        for subset, vid in sorted(segments.keys() | ambiguous.keys())
    }
    return AnnotationSet(classes, records, root)


def _read_class_file(path: Path, label: str) -> list[tuple[str, Segment]]:
    """The `(video, segment)` of each `video start end` line."""
    found = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise annotation_error(
                    path,
                    f"expected `video start end`, found {line.strip()!r}",
                    "correct the line",
                    line=line_no,
                )
            vid = fields[0]
            start = number(fields[1], path, "start", video=vid, line=line_no)
            end = number(fields[2], path, "end", video=vid, line=line_no)
            check_span(start, end, "s", path, video=vid, line=line_no)
            found.append((vid, Segment(label, start, end)))
    return found


def _same_classes(root: Path, classes_by_split: dict[str, set[str]]) -> tuple[str, ...]:
    """The classes, sorted; every split must have the same class files."""
    classes = set().union(*classes_by_split.values())
    partial = sorted(c for c in classes if any(c not in s for s in classes_by_split.values()))
    if partial:
        raise annotation_error(
            root,
            f"the splits have different class files; only some have {partial}",
            "download the missing class files again",
        )
    return tuple(sorted(classes))
