"""ActivityNet v1.3 JSON, and the files that share its layout.

Three files use this layout: ActivityNet v1.3 itself; THUMOS14 and MultiTHUMOS as ActionFormer
and other TAD toolkits write them (subsets `Validation`/`Test`, plus per-video `fps` and
per-segment `label_id` and `segment(frames)`); and the synthetic benchmark's
`annotations/activitynet.json` (plus a top-level `classes` list and per-video `fps`).
Predictions in the ActivityNet results format are read by `read_activitynet_results`, which also
reads ActionFormer's own prediction layout (`{"database": {video: [{segment, label_id,
scores}]}}`, classes by the ground truth's `label_id`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.annotation_formats.common import (
    Vocabulary,
    annotation_error,
    as_int,
    check_span,
    load_json,
    number,
    sorted_segments,
)
from datamodules.annotations import AnnotationSet, Segment, VideoRecord

_FIX_PATH = (
    "check the path: ActivityNet, THUMOS14 and the synthetic benchmark keep it in annotations/"
)


def read_activitynet(path: str | Path) -> AnnotationSet:
    """Read an ActivityNet-style `{"database": {video: {subset, duration, annotations}}}` file.

    The vocabulary is, of the following, the first the file has: a top-level `classes` list (the
    synthetic benchmark's); the leaf names of `taxonomy`, sorted; the labels ordered by their
    `label_id` (ActionFormer files, so class indices match theirs); the sorted labels used.
    Zero-length and duplicated segments (ActivityNet v1.3 has 12 and 47) are kept as they are:
    the evaluator decides what they count for. Video ids are kept as written (v1.3: no `v_`).
    """
    path = Path(path)
    data = load_json(path, "ActivityNet-style annotation file", _FIX_PATH)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise annotation_error(
            path,
            'no top-level "database" object',
            'give a file laid out as {"database": {video_id: {...}}} (a file of {"results": ...} '
            "holds predictions: pass it as `crossdistill evaluate --predictions`)",
        )
    label_ids: set[tuple[str, int | None]] = set()
    records = {
        str(vid): _record(path, str(vid), entry, label_ids) for vid, entry in database.items()
    }
    vocabulary = _vocabulary(path, data, label_ids)
    vocabulary.check_records(path, records.values())
    return AnnotationSet(vocabulary.names, records, path)


@dataclass(frozen=True)
class ScoredSegments:
    """Predictions as columns, one row each: what scoring reads, without an object per row
    (an ActivityNet-size file holds half a million)."""

    classes: tuple[str, ...]
    videos: tuple[str, ...]
    """The file's videos, in file order."""
    video: np.ndarray
    """`(N,)` index into `videos`."""
    label: np.ndarray
    """`(N,)` index into `classes`."""
    segments: np.ndarray
    """`(N, 2)` start and end, seconds."""
    scores: np.ndarray
    """`(N,)`."""


def read_activitynet_results(
    path: str | Path,
    classes: Sequence[str] | None = None,
    classes_from: str = "the ground truth's classes",
    check_spans: bool = True,
    label_ids: Callable[[], Mapping[int, str]] | None = None,
) -> AnnotationSet:
    """Read predictions in the ActivityNet results format `{"results": {video: [{label, score,
    segment}]}}`, as scored segments, so predictions written by any tool can be evaluated again;
    or in ActionFormer's `{"database": {video: [{segment, label_id, scores}]}}`, whose class ids
    `label_ids()` names (the ground truth's, `label_id_names`; called for that layout only).

    The format has no subsets or durations: every record is in subset `results`, duration None.
    Pass the ground truth's `classes` (described by `classes_from` in errors) to make a predicted
    label outside them an error. `check_spans=False` keeps segments that end before they start
    or start before 0, which the official evaluators score (as false positives, mostly).
    """
    path = Path(path)
    return _results_set(path, _results_object(path, label_ids), classes, classes_from, check_spans)


def read_results_table(
    path: str | Path,
    classes: Sequence[str],
    classes_from: str = "the ground truth's classes",
    check_spans: bool = True,
    label_ids: Callable[[], Mapping[int, str]] | None = None,
    proposals: bool = False,
) -> ScoredSegments:
    """`read_activitynet_results` as columns, with the same checks and errors: a file that
    passes them is read without building a Segment per prediction (the fast path); one that
    does not is read again record by record, for the error that names the entry.

    `proposals`: class-agnostic proposals; labels, if any, are not read, and every row is of
    the one class in `classes`."""
    path = Path(path)
    results = _results_object(path, label_ids)
    if proposals:
        (name,) = classes
        results = {
            video: [{**p, "label": name} if isinstance(p, dict) else p for p in rows]
            if isinstance(rows, list)
            else rows
            for video, rows in results.items()
        }
    try:
        return _columns(results, tuple(classes), check_spans)
    except (_Irregular, KeyError, TypeError, ValueError, IndexError):
        found = _results_set(path, results, classes, classes_from, check_spans)  # raises
    return _columns(
        {video: _as_results(record.segments) for video, record in found.records.items()},
        tuple(classes),
        check_spans,
    )


class _Irregular(ValueError):
    """The fast path met something its checks cannot name: read record by record."""


def _columns(results: dict, classes: tuple[str, ...], check_spans: bool) -> ScoredSegments:
    """The fast path: every check `_segment` makes, on whole columns."""
    if not all(type(predictions) is list for predictions in results.values()):
        raise _Irregular
    rows = [p for predictions in results.values() for p in predictions]
    labels = [p["label"] for p in rows]
    if not set(map(type, labels)) <= {str}:
        raise _Irregular
    index = {name: k for k, name in enumerate(classes)}
    label = np.array([index[name] for name in labels], dtype=np.int64)
    segments = np.array([p["segment"] for p in rows], dtype=np.float64)
    segments = segments.reshape(len(rows), -1) if rows else np.zeros((0, 2))
    scores = np.array([p["score"] for p in rows], dtype=np.float64)
    if segments.shape[1:] != (2,) or not np.isfinite(segments).all():
        raise _Irregular
    if not np.isfinite(scores).all():
        raise _Irregular
    if check_spans and ((segments[:, 1] < segments[:, 0]) | (segments[:, 0] < 0)).any():
        raise _Irregular
    counts = [len(predictions) for predictions in results.values()]
    return ScoredSegments(
        classes=classes,
        videos=tuple(str(video) for video in results),
        video=np.repeat(np.arange(len(counts)), counts),
        label=label,
        segments=segments,
        scores=scores,
    )


def _as_results(segments: Sequence[Segment]) -> list[dict]:
    return [{"label": s.label, "segment": [s.start, s.end], "score": s.score} for s in segments]


def _results_object(path: Path, label_ids: Callable[[], Mapping[int, str]] | None) -> dict:
    """The `{video: [prediction, ...]}` object of a results file, either layout."""
    data = load_json(path, "ActivityNet results file", "check the path of the predictions")
    if _actionformer_layout(data):
        names = label_ids() if label_ids is not None else None
        data = {"results": _from_actionformer(path, data["database"], names)}
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise annotation_error(
            path,
            'no top-level "results" object',
            'give a file laid out as {"results": {video_id: [...]}} (a file of {"database": ...} '
            "holds ground truth: pass it as `crossdistill evaluate --ground-truth`)",
        )
    return results


def _results_set(
    path: Path,
    results: dict,
    classes: Sequence[str] | None,
    classes_from: str,
    check_spans: bool,
) -> AnnotationSet:
    """The record-by-record reading, whose errors name the video and the entry."""
    records = {
        str(vid): VideoRecord(
            str(vid), "results", None, _predictions(path, str(vid), predictions, check_spans)
        )
        for vid, predictions in results.items()
    }
    if classes is None:
        used = {s.label for record in records.values() for s in record.segments}
        vocabulary = Vocabulary(sorted(used), f"the labels used in {path.name}")
    else:
        vocabulary = Vocabulary(classes, classes_from)
    vocabulary.check_records(path, records.values())
    return AnnotationSet(vocabulary.names, records, path)


def label_id_names(path: str | Path) -> dict[int, str]:
    """`{label_id: label}` of an ActionFormer-style annotation file (empty without label_id)."""
    data = load_json(Path(path), "ActivityNet-style annotation file", _FIX_PATH)
    database = data.get("database", {}) if isinstance(data, dict) else {}
    return {
        int(a["label_id"]): str(a["label"])
        for entry in database.values()
        if isinstance(entry, dict)
        for a in entry.get("annotations", [])
        if isinstance(a, dict) and isinstance(a.get("label_id"), int) and "label" in a
    }


def _actionformer_layout(data: Any) -> bool:
    """ActionFormer's predictions: a `database` of lists (the ground truth's holds objects)."""
    database = data.get("database") if isinstance(data, dict) and "results" not in data else None
    return isinstance(database, dict) and all(isinstance(v, list) for v in database.values())


def _from_actionformer(
    path: Path, database: dict, label_ids: Mapping[int, str] | None
) -> dict[str, list[dict]]:
    """ActionFormer's events as ActivityNet results, each `label_id` named by `label_ids`."""
    if not label_ids:
        raise annotation_error(
            path,
            "ActionFormer's prediction layout names classes by label_id, and the ground truth "
            "has none to name them",
            "evaluate against ActionFormer's annotation file (its segments carry label_id), or "
            'write the predictions as {"results": {video: [{"label", "score", "segment"}]}}',
        )
    results: dict[str, list[dict]] = {}
    for vid, events in database.items():
        results[str(vid)] = []
        for event in events:
            label_id = event.get("label_id") if isinstance(event, dict) else None
            if not isinstance(label_id, int) or label_id not in label_ids:
                raise annotation_error(
                    path,
                    f"prediction {event!r} has no label_id of the ground truth "
                    f"({min(label_ids)}-{max(label_ids)})",
                    "give every prediction an integer label_id of the ground truth",
                    video=str(vid),
                )
            segment, score = event.get("segment"), event.get("scores")
            results[str(vid)].append(
                {"label": label_ids[label_id], "score": score, "segment": segment}
            )
    return results


def _record(
    path: Path, vid: str, entry: Any, label_ids: set[tuple[str, int | None]]
) -> VideoRecord:
    """One video; collects each label with its `label_id` (None where the file has none)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("subset"), str):
        raise annotation_error(
            path, 'entry has no "subset" string', "give every video a subset", video=vid
        )
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        raise annotation_error(
            path, '"annotations" is not a list', "give the video a list of annotations", video=vid
        )
    duration = entry.get("duration")
    duration = None if duration is None else number(duration, path, "duration", video=vid)
    segments = []
    for annotation in annotations:
        segment = _segment(path, vid, annotation)
        label_ids.add((segment.label, as_int(annotation.get("label_id"))))
        segments.append(segment)
    fps = entry.get("fps")
    return VideoRecord(
        video_id=vid,
        subset=entry["subset"],
        duration=duration,
        segments=sorted_segments(segments),
        fps=None if fps is None else number(fps, path, "fps", video=vid),
    )


def _segment(
    path: Path, vid: str, annotation: Any, scored: bool = False, checked: bool = True
) -> Segment:
    """A `{"segment": [start, end], "label": ...}` object as a Segment, bounds checked (unless
    not `checked`); with `scored`, its `"score"` too (a prediction)."""
    bounds = annotation.get("segment") if isinstance(annotation, dict) else None
    label = annotation.get("label") if isinstance(annotation, dict) else None
    if not isinstance(bounds, list) or len(bounds) != 2 or not isinstance(label, str):
        raise annotation_error(
            path,
            f"annotation {annotation!r} is not {{'segment': [start, end], 'label': name}}",
            "correct the annotation",
            video=vid,
        )
    start = number(bounds[0], path, "segment start", video=vid)
    end = number(bounds[1], path, "segment end", video=vid)
    if checked:
        check_span(start, end, "s", path, video=vid)
    score = number(annotation.get("score"), path, "score", video=vid) if scored else None
    return Segment(label, start, end, score=score)


def _predictions(
    path: Path, vid: str, predictions: Any, check_spans: bool = True
) -> tuple[Segment, ...]:
    if not isinstance(predictions, list):
        raise annotation_error(
            path, "predictions are not a list", "give each video a list of predictions", video=vid
        )
    return sorted_segments(_segment(path, vid, p, True, check_spans) for p in predictions)


def _vocabulary(path: Path, data: dict, label_ids: set[tuple[str, int | None]]) -> Vocabulary:
    """The file's vocabulary, by the precedence `read_activitynet` documents."""
    if "classes" in data:
        classes = data["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise annotation_error(
                path, '"classes" is not a list of names', "write the class names as strings"
            )
        return Vocabulary(classes, f'the "classes" list of {path.name}')
    leaves = _taxonomy_leaves(data.get("taxonomy") or [])
    if leaves:
        return Vocabulary(sorted(leaves), f"the taxonomy of {path.name}")
    if label_ids and all(label_id is not None for _, label_id in label_ids):
        return _label_id_vocabulary(path, label_ids)  # type: ignore[arg-type]
    return Vocabulary(sorted({label for label, _ in label_ids}), f"the labels used in {path.name}")


def _taxonomy_leaves(taxonomy: list[dict]) -> set[str]:
    """Names of the taxonomy nodes that are no other node's parent (the 200 activities)."""
    parents = {node.get("parentId") for node in taxonomy}
    return {node["nodeName"] for node in taxonomy if node.get("nodeId") not in parents}


def _label_id_vocabulary(path: Path, label_ids: set[tuple[str, int]]) -> Vocabulary:
    """Labels in `label_id` order; the ids must name one label each and count 0, 1, 2, ..."""
    by_id: dict[int, set[str]] = {}
    for label, label_id in label_ids:
        by_id.setdefault(label_id, set()).add(label)
    fix = 'add a top-level "classes" list naming the classes in label_id order'
    clashes = {label_id: sorted(labels) for label_id, labels in by_id.items() if len(labels) > 1}
    if clashes:
        raise annotation_error(path, f"a label_id names several labels: {clashes}", fix)
    missing = sorted(set(range(len(by_id))) - set(by_id))
    if missing:
        raise annotation_error(path, f"label_id skips {missing}, so no label names them", fix)
    return Vocabulary(
        (by_id[label_id].pop() for label_id in sorted(by_id)), f"the label_id values of {path.name}"
    )
