"""Scoring prediction files, from this or any other tool, against ground truth.

`evaluate_segments` (detection mAP of an ActivityNet results file at tIoU thresholds; see
lightning_modules/metrics/segment_map.py), `evaluate_frames` (per-frame mAP of per-video dense
scores in an npz) and `evaluate_clips` (top-1/top-5 accuracy and calibration error of each
recognition head of trimmed clips) return dicts of fractions in [0, 1]. Unknown videos, labels
and classes, malformed segments (end before start, negative times) and NaN scores are errors
(`EvaluationError`, `AnnotationError`) that name the entry. The file layouts they read are
described in `crossdistill evaluate --help` (`lightning_modules.commands.evaluate`).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from datamodules.annotations import (
    AnnotationSet,
    ScoredSegments,
    Segment,
    VideoRecord,
    label_id_names,
    read_annotations,
    read_results_table,
)
from datamodules.grid import video_steps
from lightning_modules.metrics.accuracy import action_accuracy, topk_accuracy
from lightning_modules.metrics.calibration import expected_calibration_error
from lightning_modules.metrics.frame_map import average_precision, summarize_frame_ap
from lightning_modules.metrics.sample_ids import sample_order
from lightning_modules.metrics.segment_map import (
    segment_average_precision,
    summarize,
)
from lightning_modules.metrics.segment_recall import (
    AR_POINTS,
    area_under_curve,
    average_recall_curve,
    topkx_recall,
)

Conventions = Literal["strict", "official"]
"""How `evaluate segments` treats what the official evaluators score and we refuse by default."""


class EvaluationError(ValueError):
    """Prediction or ground-truth content that cannot be scored; the message names the entry."""


def evaluate_segments(
    ground_truth: Path,
    predictions: Path,
    subset: str | None,
    tious: Sequence[float],
    conventions: Conventions = "strict",
    ground_truth_format: str | None = None,
    top_k: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Detection mAP of an ActivityNet results file, and its top-kx recall (`top_k`; see
    lightning_modules/metrics/segment_recall.py).

    `strict` refuses predictions of videos outside the evaluated ground truth and segments that
    end before they start or start before 0, and matches two zero-length segments only where
    they coincide. `official` scores as the official ActivityNet evaluator (and ActionFormer's,
    which follows it) does: such predictions are false positives at their rank, negative starts
    are kept, and a zero-length prediction takes a zero-length ground-truth segment of its class
    anywhere in the video (their 0/0 = NaN). Not reproduced: the same 0/0 also makes an
    inverted prediction exactly as long as a ground-truth segment a hit there.
    """
    _check_thresholds(tious)
    official = conventions == "official"
    full = read_ground_truth(ground_truth, ground_truth_format)
    truth = _subset(full, subset)
    results = read_results_table(
        predictions,
        full.classes,
        f"the classes of {ground_truth}",
        check_spans=not official,
        label_ids=lambda: label_id_names(ground_truth) if ground_truth.suffix == ".json" else {},
    )
    # videos numbered as SegmentMAP numbers them, so that ties in score fall the same way
    video_index = dict(zip(truth.records, sample_order(list(truth.records)).tolist(), strict=True))
    _index_predicted_videos(video_index, results, full, truth, subset, predictions, official)
    class_index = {name: i for i, name in enumerate(full.classes)}

    gt = segment_table(truth.records.values(), video_index, class_index)
    if not len(gt["label"]):
        raise EvaluationError(f"{ground_truth}: no ground-truth segments to score against")
    _refuse_labels_of_other_subsets(full, truth, results, predictions)
    table = {
        "pred_video": np.array([video_index[v] for v in results.videos], np.int64)[results.video],
        "pred_label": results.label,
        "pred_segments": results.segments,
        "pred_scores": results.scores,
        **{f"gt_{name}": gt[name] for name in ("video", "label", "segments")},
        "num_classes": len(full.classes),
        "tious": tious,
    }
    recall = topkx_recall(**table, top_k=top_k, zero_length="no_match" if official else "strict")
    inverted = results.segments[:, 1] < results.segments[:, 0]
    if inverted.any():  # the official tIoU of a segment ending before its start is <= 0
        # on a video without ground truth: false positives
        table["pred_video"] = np.where(inverted, len(video_index), table["pred_video"])
        table["pred_segments"] = np.where(
            inverted[:, None], results.segments[:, ::-1], results.segments
        )
    ap = segment_average_precision(**table, zero_length="official" if official else "strict")
    columns = [f"{t:g}" for t in tious]
    per_class = _per_class(full.classes, ap, columns)
    return {
        **summarize(ap, tious),
        "recall": _recall_summary(recall, columns, top_k),
        "conventions": conventions,
        "per_class": per_class,
    }


def _recall_summary(
    recall: np.ndarray, columns: Sequence[str], top_k: Sequence[int]
) -> dict[str, dict[str, float]]:
    """`{"1x": {tIoU: recall, ..., "average": mean}, ...}`, means over classes with ground truth."""
    present = ~np.isnan(recall[0, 0])
    summary = {}
    for j, k in enumerate(top_k):
        values = recall[:, j, present].mean(axis=1)
        row = {column: float(v) for column, v in zip(columns, values, strict=True)}
        summary[f"{k}x"] = {**row, "average": float(values.mean())}
    return summary


def evaluate_proposals(
    ground_truth: Path,
    predictions: Path,
    subset: str | None,
    tious: Sequence[float],
    max_average_proposals: float = 100,
    conventions: Conventions = "strict",
    ground_truth_format: str | None = None,
) -> dict[str, Any]:
    """Average recall of class-agnostic proposals against their average number per video
    (AR@AN, the ActivityNet proposal task; lightning_modules/metrics/segment_recall.py).

    Labels in the file, if any, are not read. `strict` refuses proposals of videos outside the
    evaluated ground truth and segments ending before they start or starting before 0, and
    recalls a zero-length segment with the same zero-length proposal; `official` scores as the
    official evaluator does: such proposals count in the file's proposals (the sampling ratio),
    an inverted one recalls nothing, negative starts are kept, and zero-length segments are
    never recalled (its 0/0 = NaN).
    """
    _check_thresholds(tious)
    if not max_average_proposals > 0:
        raise EvaluationError(f"--max-proposals must be positive, got {max_average_proposals}")
    official = conventions == "official"
    full = read_ground_truth(ground_truth, ground_truth_format)
    truth = _subset(full, subset)
    results = read_results_table(predictions, (PROPOSAL,), check_spans=not official, proposals=True)
    video_index = {video: i for i, video in enumerate(truth.records)}
    _index_predicted_videos(video_index, results, full, truth, subset, predictions, official)
    gt = segment_table(truth.records.values(), video_index, dict.fromkeys(full.classes, 0))
    if not len(gt["label"]):
        raise EvaluationError(f"{ground_truth}: no ground-truth segments to recall")
    try:
        recall, proposals_per_video = average_recall_curve(
            pred_video=np.array([video_index[v] for v in results.videos], np.int64)[results.video],
            pred_segments=results.segments,
            pred_scores=results.scores,
            gt_video=gt["video"],
            gt_segments=gt["segments"],
            tious=tious,
            max_average_proposals=max_average_proposals,
            zero_length="no_match" if official else "strict",
        )
    except ValueError as err:
        raise EvaluationError(f"{predictions}: {err}") from None
    average = recall.mean(axis=0)
    points = {
        f"{max_average_proposals * p / AR_POINTS:g}": float(average[p - 1])
        for p in (1, 5, 10, 50, 100)
    }
    return {
        "AR@AN": points,
        "AUC": area_under_curve(average, proposals_per_video),
        "recall_at_max": {
            f"{t:g}": float(value) for t, value in zip(tious, recall[:, -1], strict=True)
        },
        "curve": {
            "average_proposals": [float(v) for v in proposals_per_video],
            "average_recall": [float(v) for v in average],
        },
        "conventions": conventions,
    }


PROPOSAL = "proposal"
"""The one class of class-agnostic proposals."""


def _check_thresholds(tious: Sequence[float]) -> None:
    if len({f"{t:g}" for t in tious}) != len(tious):
        raise EvaluationError(f"--tiou names a threshold twice: {list(tious)}")


def _index_predicted_videos(
    video_index: dict[str, int],
    results: ScoredSegments,
    full: AnnotationSet,
    truth: AnnotationSet,
    subset: str | None,
    predictions: Path,
    official: bool,
) -> None:
    """Number the videos of the predictions. A video outside the evaluated ground truth is an
    error naming it (strict), or takes a new index (official): its rows then score as the
    official tools score them (false positives; proposals counted in the sampling ratio)."""
    for video in results.videos:
        if official:
            video_index.setdefault(video, len(video_index))
        else:
            _check_video(video, truth, full, subset, predictions)


def _per_class(
    classes: Sequence[str], ap: np.ndarray, columns: Sequence[str]
) -> dict[str, dict[str, float]]:
    """`{class: {column: AP, ...}}` of the `(len(columns), K)` APs, for the classes with ground
    truth (the others have none to score), with their mean over columns when there are several."""
    table = {}
    for k, name in enumerate(classes):
        if np.isnan(ap[:, k]).any():
            continue
        row = {column: float(value) for column, value in zip(columns, ap[:, k], strict=True)}
        table[name] = {**row, "average": float(ap[:, k].mean())} if len(columns) > 1 else row
    return table


def _refuse_labels_of_other_subsets(
    full: AnnotationSet, truth: AnnotationSet, results: ScoredSegments, predictions: Path
) -> None:
    """Predictions of a label whose ground truth lies only in other subsets score no class
    here: the official ActivityNet evaluator raises; dropping them silently would hide them."""
    evaluated = {s.label for r in truth.records.values() for s in r.segments}
    elsewhere = {s.label for r in full.records.values() for s in r.segments} - evaluated
    index = [k for k, name in enumerate(results.classes) if name in elsewhere]
    found = np.flatnonzero(np.isin(results.label, index))
    if len(found):
        row = found[0]
        video, label = results.videos[results.video[row]], results.classes[results.label[row]]
        raise EvaluationError(
            f"{predictions}: video {video!r} predicts {label!r}, which has ground truth only in "
            "other subsets than the evaluated one, so it would score no class (the official "
            "evaluator raises). Fix: drop those predictions, or evaluate a subset with that label"
        )


def segment_table(
    records: Iterable[VideoRecord], video_index: dict[str, int], class_index: dict[str, int]
) -> dict[str, np.ndarray]:
    """The segments of records as arrays: video and class indices, bounds, scores (NaN if none)."""
    video, label, bounds, scores = [], [], [], []
    for record in records:
        for segment in record.segments:
            video.append(video_index[record.video_id])
            label.append(class_index[segment.label])
            bounds.append((segment.start, segment.end))
            scores.append(np.nan if segment.score is None else segment.score)
    return {
        "video": np.array(video, dtype=np.int64),
        "label": np.array(label, dtype=np.int64),
        "segments": np.array(bounds, dtype=np.float64).reshape(-1, 2),
        "scores": np.array(scores, dtype=np.float64),
    }


CHARADES_POINTS = 25
"""Points per video of the Charades localisation protocol (`Charades_v1_localize.m`)."""

FrameProtocol = Literal["pooled", "pdan", "charades"]


def read_ground_truth(path: Path, format: str | None = None) -> AnnotationSet:
    """Ground truth in any layout of the data layer's readers (`format`, e.g. `tsu`,
    `multithumos`, `thumos14_txt`); by default a `.csv` is Charades' and anything else
    ActivityNet's."""
    if format is None:
        format = "charades" if path.suffix == ".csv" else "activitynet"
    return read_annotations(path, format)


def evaluate_frames(
    ground_truth: Path,
    predictions: Path,
    subset: str | None,
    protocol: FrameProtocol = "pooled",
    ground_truth_format: str | None = None,
) -> dict[str, float | str]:
    """Per-frame mAP of per-video dense scores, against ActivityNet-layout JSON or a Charades CSV
    (`Charades_v1_test.csv`, its class list `Charades_v1_classes.txt` beside it).

    `pooled` scores every row of every video, row i at `(i + 0.5) * stride`, positive where
    `start <= t <= end` (what training logs). `pdan` labels rows as the TSU/MultiTHUMOS/Charades
    loaders of Dai et al.'s PDAN code do: row i at `i * duration / T`, positive where
    `start < t < end`. `charades` scores 25 instants a video, `j / 25 * duration` for
    j = 0..24, each by the row whose step holds it, positive where `start <= t <= end`, as the
    Charades localisation evaluator does, so long and short videos weigh the same. The two
    official protocols rank tied scores one by one in the ground truth's video order (the
    evaluators' sorts; instants that share a row tie under `charades`). Every protocol also
    gives `frame_wAP`, the APs weighted by each class's positives (Charades' WAP). A video
    without a duration (PKU-MMD's label files) lasts its rows times `stride`.
    """
    full = read_ground_truth(ground_truth, ground_truth_format)
    truth = _subset(full, subset)
    if predictions.suffix == ".pkl":
        arrays = {**_load_pdan_pickle(predictions), "classes": np.array(full.classes)}
    else:
        arrays = _load_npz(predictions)
    stride = arrays.pop("stride", None)
    if stride is not None and (stride.size != 1 or not float(stride) > 0):
        raise EvaluationError(f"{predictions}: `stride` must be one positive number of seconds")
    if "classes" not in arrays:
        raise EvaluationError(f"{predictions}: no `classes` array naming the score columns")
    columns = [str(name) for name in arrays.pop("classes").reshape(-1)]
    for name in columns:
        if name not in full.classes:
            raise EvaluationError(
                f"{predictions}: class {name!r} in `classes` is not a label of {ground_truth}"
            )
    if len(set(columns)) != len(columns):
        raise EvaluationError(f"{predictions}: `classes` names a class twice")
    column = {name: i for i, name in enumerate(columns)}
    for video in arrays:
        _check_video(video, truth, full, subset, predictions)
    missing = [video for video in truth.records if video not in arrays]
    if missing:
        raise EvaluationError(
            f"{predictions}: no scores for {len(missing)} video(s) of the evaluated ground truth, "
            f"e.g. {missing[:3]}"
        )

    scores, targets = [], []
    for video, record in truth.records.items():
        video_scores = arrays[video]
        if video_scores.ndim != 2 or video_scores.shape[1] != len(columns) or not len(video_scores):
            raise EvaluationError(
                f"{predictions}: video {video!r}: scores have shape {video_scores.shape}, "
                f"expected (T, {len(columns)}) with T >= 1"
            )
        if not np.isfinite(video_scores).all():
            row, col = (int(i) for i in np.argwhere(~np.isfinite(video_scores))[0])
            raise EvaluationError(
                f"{predictions}: video {video!r}: score {video_scores[row, col]} (not finite) in "
                f"row {row}, class {columns[col]!r}"
            )
        steps = len(video_scores)
        if record.duration is None and stride is None:
            raise EvaluationError(
                f"{ground_truth}: video {video!r} has no duration, and {predictions} no `stride`"
            )
        duration = steps * float(stride) if record.duration is None else record.duration
        step_seconds = duration / steps if stride is None else float(stride)
        if stride is not None and record.duration is not None:
            expected = video_steps(record.duration, float(stride))
            if abs(steps - expected) > 1:
                raise EvaluationError(
                    f"{predictions}: video {video!r}: {steps} rows of {float(stride):g} s, but "
                    f"the video lasts {record.duration:g} s ({expected} rows): padded, cut, or "
                    "another video's scores. Fix: write one row per step of the video"
                )
        if protocol == "charades":
            times = np.arange(CHARADES_POINTS) / CHARADES_POINTS * duration  # as in .m
            rows = np.minimum((times / step_seconds).astype(np.int64), steps - 1)
            video_scores = video_scores[rows]
        elif protocol == "pdan":
            times = np.arange(steps) / (steps / duration)  # as PDAN's `fr / fps`
        else:
            times = (np.arange(steps) + 0.5) * step_seconds
        inside = _strictly_inside if protocol == "pdan" else _inside
        positive = np.zeros(video_scores.shape, dtype=bool)
        for segment in record.segments:
            if segment.label not in column:
                raise EvaluationError(
                    f"{predictions}: class {segment.label!r} has ground truth in video "
                    f"{video!r} but no column in `classes`"
                )
            positive[inside(times, segment), column[segment.label]] = True
        scores.append(video_scores)
        targets.append(positive)
    targets_all = np.concatenate(targets)
    if not targets_all.any():
        raise EvaluationError(f"{ground_truth}: no frame lies inside any ground-truth segment")
    ties = "together" if protocol == "pooled" else "in_order"
    ap = average_precision(np.concatenate(scores), targets_all, ties)
    result = summarize_frame_ap(ap, targets_all.sum(0))
    return {**result, "protocol": protocol, "per_class": _per_class(columns, ap[None], ["AP"])}


def _inside(times: np.ndarray, segment: Segment) -> np.ndarray:
    return (times >= segment.start) & (times <= segment.end)


def _strictly_inside(times: np.ndarray, segment: Segment) -> np.ndarray:
    return (times > segment.start) & (times < segment.end)


def evaluate_clips(predictions: Path) -> dict[str, dict[str, float]]:
    """Top-1/top-5 accuracy and calibration error of each recognition head."""
    data = _load_json(predictions)
    kind, heads, clips = (data.get(key) for key in ("scores", "heads", "clips"))
    if kind not in ("logits", "probabilities"):
        raise EvaluationError(f'{predictions}: "scores" must be "logits" or "probabilities"')
    if not isinstance(heads, dict) or not heads or not isinstance(clips, dict) or not clips:
        raise EvaluationError(f'{predictions}: needs non-empty "heads" and "clips" objects')
    if {"verb", "noun"} <= set(heads) and "action" in heads:
        raise EvaluationError(f'{predictions}: "action" is reported from verb and noun')

    arrays = {
        head: _head_arrays(predictions, head, classes, clips, kind)
        for head, classes in heads.items()
    }
    result: dict[str, dict[str, float]] = {}
    for head, (probs, labels) in arrays.items():
        result[head] = {
            **topk_accuracy(probs, labels),
            "ece": expected_calibration_error(probs, labels),
        }
    if {"verb", "noun"} <= set(arrays):
        result["action"] = {"top1": action_accuracy(*arrays["verb"], *arrays["noun"])}
    return result


def _head_arrays(
    path: Path, head: str, classes: Any, clips: dict, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities `(N, K)` and label indices `(N,)` of one head, every entry checked."""
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise EvaluationError(f"{path}: head {head!r}: classes must be a list of names")
    index = {name: i for i, name in enumerate(classes)}
    scores = np.zeros((len(clips), len(classes)))
    labels = np.zeros(len(clips), dtype=np.int64)
    for row, (clip, entry) in enumerate(clips.items()):
        where = f"{path}: clip {clip!r}, head {head!r}"
        item = entry.get(head) if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise EvaluationError(f'{where}: missing {{"label", "scores"}}')
        if item.get("label") not in index:
            raise EvaluationError(
                f"{where}: label {item.get('label')!r} is not a class of the head"
            )
        labels[row] = index[item["label"]]
        values = item.get("scores")
        if not isinstance(values, list) or len(values) != len(classes):
            raise EvaluationError(f"{where}: scores must be a list of {len(classes)} numbers")
        try:
            scores[row] = values
        except (TypeError, ValueError):
            raise EvaluationError(f"{where}: scores must be numbers") from None
        if not np.isfinite(scores[row]).all():
            bad = int(np.argmax(~np.isfinite(scores[row])))
            raise EvaluationError(
                f"{where}: score {scores[row, bad]} (not finite) for class {classes[bad]!r}"
            )
    if kind == "logits":
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True), labels
    bad = (scores < 0).any(axis=1) | ~np.isclose(scores.sum(axis=1), 1.0, atol=1e-3)
    if bad.any():
        clip = list(clips)[int(np.argmax(bad))]
        raise EvaluationError(
            f"{path}: clip {clip!r}, head {head!r}: probabilities must be >= 0 and sum to 1"
        )
    return scores, labels


def _subset(annotations: AnnotationSet, subset: str | None) -> AnnotationSet:
    """The evaluated videos. Subset names match whatever their case (ActionFormer passes
    `test`, THUMOS14's file says `Test`). Without `--subset` a file of one subset is scored
    whole; a file of several is refused, listing them: the official ActivityNet evaluator
    scores `validation` only, and every video of the file (training included) would score a
    sample submission 0.33 instead of 1.0."""
    names = annotations.subset_names
    if subset is None:
        if len(names) > 1:
            raise EvaluationError(
                f"{annotations.source} holds the subsets {list(names)}: name the one to score "
                "with --subset (the official ActivityNet evaluator scores 'validation')"
            )
        return annotations
    same = [name for name in names if name.lower() == subset.lower()]
    return annotations.subset(same[0] if len(same) == 1 else subset)


def _check_video(
    video: str, truth: AnnotationSet, full: AnnotationSet, subset: str | None, path: Path
) -> None:
    """A predicted video must be one of the evaluated ground truth."""
    if video in truth.records:
        return
    if video in full.records:
        raise EvaluationError(
            f"{path}: video {video!r} is in subset {full.records[video].subset!r}, "
            f"not in the evaluated subset {subset!r}"
        )
    hint = ""
    if video.startswith("v_") and video[2:] in full.records:
        hint = f" (the ground truth writes it {video[2:]!r}, without the v_ prefix)"
    raise EvaluationError(f"{path}: video {video!r} is not in {full.source}{hint}")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz archive; a .npy, a truncated or a damaged file is named."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise EvaluationError(
                f"{path}: one array (a .npy file), not an npz archive of one array per "
                "video. Fix: save with np.savez(path, classes=..., VIDEO=scores, ...)"
            )
        with loaded as npz:
            return {name: npz[name] for name in npz.files}
    except EvaluationError:
        raise
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise EvaluationError(
            f"{path}: not a readable npz archive ({err}): truncated or damaged. Fix: write it again"
        ) from None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays only: a pickle can run any code it names."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in _NUMPY_PICKLE_NAMES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array")


_NUMPY_PICKLE_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}


def _load_pdan_pickle(path: Path) -> dict[str, np.ndarray]:
    """PDAN's test output: `{video: (K, T) probabilities}` pickled, columns in the ground
    truth's class order; as `{video: (T, K)}`."""
    try:
        with open(path, "rb") as handle:
            data = _ArraysOnly(handle).load()
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise EvaluationError(
            f"{path}: not a pickle of {{video: (K, T) array}} as PDAN writes ({err}). Fix: "
            "pickle a dict of numpy arrays, or write an npz (see --help)"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(v, np.ndarray) and v.ndim == 2 for v in data.values()
    ):
        raise EvaluationError(
            f"{path}: holds {type(data).__name__}, not {{video: (K, T) array}} as PDAN writes"
        )
    return {str(video): scores.T for video, scores in data.items()}


def _load_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a JSON object")
    return data
