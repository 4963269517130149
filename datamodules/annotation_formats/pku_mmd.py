"""PKU-MMD: one label file per sequence and view (`0002-L.txt`) in a folder.

Each line is `class,start_frame,end_frame,confidence`, frames at 30 fps, classes 1-51. The
confidence (1 or 2, how sure the annotators were) is not kept: the detection metrics ignore it.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.annotation_formats.common import (
    Vocabulary,
    annotation_error,
    check_span,
    number,
    numbers_or_class_list,
    sorted_segments,
)
from datamodules.annotations import AnnotationSet, Segment, VideoRecord

PKU_MMD_FPS = 30.0
NUM_CLASSES = 51
FIRST_CLASS = 1


def read_pku_mmd(
    folder: str | Path, class_list: str | Path | None = None, subset: str | None = "all"
) -> AnnotationSet:
    """Read every `*.txt` label file of `folder`; the video id is the file name (`0002-L`).

    PKU-MMD publishes its class names only in a spreadsheet, so without `class_list` (a file of
    `1 <name>` ... `51 <name>` lines) the labels are the class numbers as strings. The label
    files do not say which split a sequence belongs to (the cross-subject and cross-view lists
    do), so all records get `subset`; `subset=None` names it after the folder (labels split by
    hand into `train/` and `test/` folders, as configs/data/real/pku_mmd_i3d.yaml reads them).
    """
    folder = Path(folder)
    subset = folder.name if subset is None else subset
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no PKU-MMD label files (*.txt) in {folder}. Fix: give the folder of the label files"
        )
    vocabulary = numbers_or_class_list(
        class_list, FIRST_CLASS, NUM_CLASSES, "PKU-MMD", "check the class_list path"
    )
    records = {f.stem: _record(f, subset, vocabulary) for f in files}
    return AnnotationSet(vocabulary.names, records, folder)


def _record(path: Path, subset: str, vocabulary: Vocabulary) -> VideoRecord:
    vid = path.stem
    segments = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = [field.strip() for field in line.split(",")]
            if len(fields) != 4:
                raise annotation_error(
                    path,
                    f"expected `class,start_frame,end_frame,confidence`, found {line.strip()!r}",
                    "correct the line",
                    video=vid,
                    line=line_no,
                )
            label = vocabulary.name_of(fields[0], path, video=vid, line=line_no)
            start = number(fields[1], path, "start frame", video=vid, line=line_no)
            end = number(fields[2], path, "end frame", video=vid, line=line_no)
            check_span(start, end, "frames", path, video=vid, line=line_no)
            segments.append(Segment(label, start / PKU_MMD_FPS, end / PKU_MMD_FPS))
    return VideoRecord(vid, subset, None, sorted_segments(segments), PKU_MMD_FPS)
