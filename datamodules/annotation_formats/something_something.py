"""Something-Something V2 lists (`something-something-v2-{train,validation,test}.json`).

Every entry is a trimmed clip, `{"id", "label", "template", "placeholders"}`; its class is the
template with the square brackets removed (`Spinning [something] that quickly stops spinning` ->
`Spinning something that quickly stops spinning`), the keys of `something-something-v2-labels.json`
(`{"template": "index"}`, 174 classes). `label` is the filled-in caption, not a class. The test
list has only ids: clip_label None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.annotation_formats.common import (
    Vocabulary,
    annotation_error,
    as_int,
    load_json,
    subset_from_filename,
)
from datamodules.annotations import AnnotationSet, VideoRecord

LABELS_FILE = "something-something-v2-labels.json"


def read_something_something(
    path: str | Path, labels_file: str | Path | None = None, subset: str | None = None
) -> AnnotationSet:
    """Read one SSv2 list as clips (`clip_label` set, no segments, duration unknown).

    `labels_file` defaults to `something-something-v2-labels.json` next to `path`, whose indices
    order `classes`. `subset` defaults to the file name's last word (`...-validation.json` ->
    `validation`).
    """
    path = Path(path)
    labels_path = Path(labels_file) if labels_file is not None else path.parent / LABELS_FILE
    vocabulary = _labels(labels_path)
    entries = load_json(path, "Something-Something V2 list", "check the path of the SSv2 JSON")
    if not isinstance(entries, list):
        raise annotation_error(
            path, "the top level is not a list", 'give a list of {"id": ..., "template": ...}'
        )
    subset = subset if subset is not None else subset_from_filename(path)
    records = {}
    for entry in entries:
        vid = _clip_id(path, entry)
        records[vid] = VideoRecord(vid, subset, None, clip_label=_class(entry))
    vocabulary.check_records(path, records.values())
    return AnnotationSet(vocabulary.names, records, path)


def _labels(path: Path) -> Vocabulary:
    """Class names ordered by the labels file's indices, which must count 0, 1, 2, ..."""
    fix = f"put {LABELS_FILE} next to the list, or pass labels_file="
    labels = load_json(path, "SSv2 labels file", fix)
    if not isinstance(labels, dict):
        raise annotation_error(path, "the top level is not an object", "use the released file")
    names_by_index = {as_int(index): name for name, index in labels.items()}
    if set(names_by_index) != set(range(len(labels))):
        raise annotation_error(
            path,
            "the indices are not 0, 1, 2, ... one per template",
            "use the labels file as released",
        )
    return Vocabulary((names_by_index[i] for i in range(len(labels))), path.name)


def _clip_id(path: Path, entry: Any) -> str:
    if not isinstance(entry, dict) or "id" not in entry:
        raise annotation_error(path, f"entry {entry!r} has no id", "give every clip an id")
    return str(entry["id"])


def _class(entry: dict) -> str | None:
    template = entry.get("template")
    return None if template is None else str(template).replace("[", "").replace("]", "")
