"""`crossdistill evaluate` end to end on small files written here, and on the real ActivityNet
ground truth with the official sample submission."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, top_k_accuracy_score
from torchmetrics.functional.classification import multiclass_calibration_error

from lightning_modules.commands.evaluate import main

TAXONOMY = [{"nodeId": 0, "nodeName": "Root", "parentId": None}] + [
    {"nodeId": i, "nodeName": name, "parentId": 0}
    for i, name in enumerate(["jump", "run", "swim"], 1)
]
DATABASE = {
    "vid_a": {
        "subset": "validation",
        "duration": 100.0,
        "annotations": [
            {"segment": [10, 30], "label": "jump"},
            {"segment": [50, 60], "label": "run"},
        ],
    },
    "vid_b": {
        "subset": "validation",
        "duration": 40.0,
        "annotations": [{"segment": [0, 20], "label": "jump"}],
    },
    "vid_c": {
        "subset": "training",
        "duration": 50.0,
        "annotations": [{"segment": [5, 15], "label": "run"}],
    },
}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def ground_truth(tmp_path: Path) -> Path:
    return write_json(
        tmp_path / "gt.json", {"version": "test", "taxonomy": TAXONOMY, "database": DATABASE}
    )


def perfect_results(subset: str = "validation") -> dict:
    return {
        video: [
            {"label": a["label"], "score": 1.0, "segment": a["segment"]}
            for a in entry["annotations"]
        ]
        for video, entry in DATABASE.items()
        if entry["subset"] == subset
    }


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, dict | None, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, (json.loads(out) if status == 0 else None), err


def segments_argv(gt: Path, pred: Path, *extra: str) -> list[str]:
    return ["segments", "--ground-truth", str(gt), "--predictions", str(pred), *extra]


def test_segments_perfect_and_shifted(ground_truth: Path, tmp_path: Path, capsys) -> None:
    pred = write_json(tmp_path / "p.json", {"results": perfect_results()})
    status, result, _ = run(segments_argv(ground_truth, pred, "--subset", "validation"), capsys)
    assert status == 0
    assert set(result["mAP"]) == {
        "0.5",
        "0.55",
        "0.6",
        "0.65",
        "0.7",
        "0.75",
        "0.8",
        "0.85",
        "0.9",
        "0.95",
    }
    assert set(result["mAP"].values()) == {1.0} and result["average_mAP"] == 1.0

    results = perfect_results()
    results["vid_a"][0] = {"label": "jump", "score": 0.9, "segment": [14, 30]}  # tIoU 16/20
    pred = write_json(tmp_path / "shifted.json", {"results": results})
    argv = segments_argv(
        ground_truth, pred, "--subset", "validation", "--tiou", "0.5", "0.8", "0.85"
    )
    status, result, _ = run(argv, capsys)
    # jump: above 0.8 the shifted one (ranked second) misses: AP 1/2; run stays 1; recall:
    # vid_a's jump is missed at 0.85 by its one prediction (1x and 5x alike)
    recall = {"0.5": 1.0, "0.8": 1.0, "0.85": 0.75, "average": pytest.approx(11 / 12)}
    assert result == {
        "mAP": {"0.5": 1.0, "0.8": 1.0, "0.85": 0.75},
        "average_mAP": pytest.approx(11 / 12),
        "recall": {"1x": recall, "5x": recall},
        "conventions": "strict",
        "per_class": {
            "jump": {"0.5": 1.0, "0.8": 1.0, "0.85": 0.5, "average": pytest.approx(5 / 6)},
            "run": {"0.5": 1.0, "0.8": 1.0, "0.85": 1.0, "average": 1.0},
        },
    }


def test_segments_need_a_subset_when_the_file_has_several(
    ground_truth: Path, tmp_path: Path, capsys
) -> None:
    """Scoring every video of a file of several subsets made the official sample submission
    score 0.33; now the subsets are listed. Names match whatever their case."""
    pred = write_json(tmp_path / "p.json", {"results": perfect_results()})
    status, _, err = run(segments_argv(ground_truth, pred, "--tiou", "0.5"), capsys)
    assert status == 1 and "['validation', 'training']" in err and "--subset" in err
    status, result, _ = run(segments_argv(ground_truth, pred, "--subset", "VALIDATION"), capsys)
    assert status == 0 and result["average_mAP"] == 1.0


def test_a_label_with_ground_truth_only_in_another_subset_is_refused(
    ground_truth: Path, tmp_path: Path, capsys
) -> None:
    """With vid_a's 'run' segment removed, 'run' has ground truth only in training (vid_c):
    validation predictions of it were dropped silently before."""
    data = json.loads(ground_truth.read_text())
    data["database"]["vid_a"]["annotations"] = [{"segment": [10, 30], "label": "jump"}]
    write_json(ground_truth, data)
    results = perfect_results()
    results["vid_a"].append({"label": "run", "score": 0.9, "segment": [50, 60]})
    pred = write_json(tmp_path / "p.json", {"results": results})
    status, _, err = run(segments_argv(ground_truth, pred, "--subset", "validation"), capsys)
    assert status == 1 and "'run', which has ground truth only in other subsets" in err


def test_thresholds_are_the_official_linspace_values() -> None:
    from lightning_modules.metrics.segment_map import ACTIVITYNET_TIOUS, THUMOS14_TIOUS

    assert ACTIVITYNET_TIOUS[8] == 0.8999999999999999  # np.linspace, as the official tool
    assert THUMOS14_TIOUS == tuple(np.linspace(0.3, 0.7, 5))  # ActionFormer's values
    from lightning_modules.tasks import SegmentTask

    assert SegmentTask(tious="activitynet").tious == ACTIVITYNET_TIOUS  # what configs name
    assert SegmentTask().tious == THUMOS14_TIOUS
    with pytest.raises(ValueError, match="thumos14"):
        SegmentTask(tious="anet")


@pytest.mark.parametrize(
    ("video", "prediction", "message"),
    [
        ("vid_z", {"label": "jump", "score": 1, "segment": [0, 1]}, "'vid_z' is not in"),
        ("v_vid_a", {"label": "jump", "score": 1, "segment": [0, 1]}, "without the v_ prefix"),
        ("vid_c", {"label": "run", "score": 1, "segment": [0, 1]}, "subset 'training'"),
        ("vid_a", {"label": "fly", "score": 1, "segment": [0, 1]}, "'fly'"),
        ("vid_a", {"label": "jump", "score": 1, "segment": [5, 1]}, "before its start"),
        ("vid_a", {"label": "jump", "score": 1, "segment": [-2, 1]}, "before the video starts"),
        ("vid_a", {"label": "jump", "score": float("nan"), "segment": [0, 1]}, "score"),
    ],
)
def test_segments_errors_name_the_entry(
    ground_truth: Path, tmp_path: Path, capsys, video: str, prediction: dict, message: str
) -> None:
    results = perfect_results()
    results.setdefault(video, []).append(prediction)
    pred = write_json(tmp_path / "p.json", {"results": results})
    status, _, err = run(segments_argv(ground_truth, pred, "--subset", "validation"), capsys)
    assert status == 1
    assert message in err and video in err


def test_unknown_subset_is_an_error(ground_truth: Path, tmp_path: Path, capsys) -> None:
    pred = write_json(tmp_path / "p.json", {"results": perfect_results()})
    status, _, err = run(segments_argv(ground_truth, pred, "--subset", "valdation"), capsys)
    assert status == 1 and "valdation" in err


def frame_targets(columns: list[str], subset: str = "validation") -> dict[str, np.ndarray]:
    """Targets by the rule of the issue, with T = duration (one row per second)."""
    targets = {}
    for video, entry in DATABASE.items():
        if entry["subset"] != subset:
            continue
        steps = int(entry["duration"])
        times = (np.arange(steps) + 0.5) * entry["duration"] / steps
        y = np.zeros((steps, len(columns)), dtype=bool)
        for a in entry["annotations"]:
            start, end = a["segment"]
            y[:, columns.index(a["label"])] |= (times >= start) & (times <= end)
        targets[video] = y
    return targets


def test_frames_against_sklearn(ground_truth: Path, tmp_path: Path, capsys) -> None:
    columns = ["swim", "run", "jump"]  # swim has no positive step
    targets = frame_targets(columns)
    rng = np.random.default_rng(0)
    scores = {video: y * 0.3 + rng.uniform(size=y.shape) for video, y in targets.items()}
    np.savez(tmp_path / "s.npz", classes=np.array(columns), **scores)
    argv = ["frames", "--ground-truth", str(ground_truth), "--predictions", str(tmp_path / "s.npz")]
    status, result, _ = run([*argv, "--subset", "validation"], capsys)
    assert status == 0
    y = np.concatenate(list(targets.values()))
    s = np.concatenate(list(scores.values()))
    ap = [average_precision_score(y[:, k], s[:, k]) for k in (1, 2)]
    assert result["frame_mAP"] == pytest.approx(np.mean(ap), abs=1e-12)
    assert result["frame_mAP_all"] == pytest.approx(np.sum(ap) / 3, abs=1e-12)
    assert 0.3 < result["frame_mAP"] < 1
    # per class: the classes with a positive step, each its own AP
    assert result["per_class"] == {
        "run": {"AP": pytest.approx(ap[0], abs=1e-12)},
        "jump": {"AP": pytest.approx(ap[1], abs=1e-12)},
    }
    positives = y[:, 1:].sum(0)
    weighted = (ap[0] * positives[0] + ap[1] * positives[1]) / positives.sum()
    assert result["frame_wAP"] == pytest.approx(weighted, abs=1e-12)

    np.savez(
        tmp_path / "p.npz", classes=np.array(columns), **{v: t * 1.0 for v, t in targets.items()}
    )
    status, result, _ = run([*argv[:-1], str(tmp_path / "p.npz"), "--subset", "validation"], capsys)
    assert result == {
        "frame_mAP": 1.0,
        "frame_mAP_all": pytest.approx(2 / 3),
        "frame_wAP": 1.0,
        "protocol": "pooled",
        "per_class": {"run": {"AP": 1.0}, "jump": {"AP": 1.0}},
    }


def test_frames_against_a_charades_csv(tmp_path: Path, capsys) -> None:
    """Charades' own ground truth (the test CSV, its class list beside it) scores dense
    predictions: rows at (i + 0.5) * length / T, labelled by the CSV's actions."""
    header = (
        "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"
    )
    (tmp_path / "Charades_v1_classes.txt").write_text("c000 Sitting down\nc001 Opening a door\n")
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text(
        f"{header}\nAB12C,S,K,6,7,Yes,x,,x,c000 0.0 4.0;c001 6.0 10.0,10.0\n"
        "XY34Z,S,K,6,7,Yes,x,,x,c001 2.0 4.0,5.0\n"
    )
    times = {"AB12C": (np.arange(10) + 0.5) * 1.0, "XY34Z": (np.arange(5) + 0.5) * 1.0}
    bounds = {"AB12C": [(0, 0.0, 4.0), (1, 6.0, 10.0)], "XY34Z": [(1, 2.0, 4.0)]}
    truth = {video: np.zeros((len(t), 2)) for video, t in times.items()}
    for video, segments in bounds.items():
        for k, start, end in segments:
            truth[video][(times[video] >= start) & (times[video] <= end), k] = 1
    classes = np.array(["Sitting down", "Opening a door"])
    np.savez(tmp_path / "perfect.npz", classes=classes, **truth)
    argv = ["frames", "--ground-truth", str(csv), "--predictions", str(tmp_path / "perfect.npz")]
    status, result, err = run(argv, capsys)
    assert status == 0, err
    assert result == {
        "frame_mAP": 1.0, "frame_mAP_all": 1.0, "frame_wAP": 1.0, "protocol": "pooled",
        "per_class": {"Sitting down": {"AP": 1.0}, "Opening a door": {"AP": 1.0}},
    }  # fmt: skip
    flipped = {video: 1 - y for video, y in truth.items()}
    np.savez(tmp_path / "flipped.npz", classes=classes, **flipped)
    status, result, _ = run([*argv[:-1], str(tmp_path / "flipped.npz")], capsys)
    y = np.concatenate(list(truth.values()))
    ap = [average_precision_score(y[:, k], 1 - y[:, k]) for k in (0, 1)]
    assert status == 0 and result["frame_mAP"] == pytest.approx(np.mean(ap), abs=1e-12)


def _charades_localize_map(
    lengths: dict[str, float],
    actions: dict[str, list],
    scores: dict[str, np.ndarray],
    stride: float,
) -> tuple[float, float]:
    """A transcription of the Charades localisation evaluator (`Charades_v1_localize.m`): 25
    instants a video at (j - 1) / 25 * length, labels where start <= t <= end, the submission's
    score of the frame holding the instant, and THUMOS' per-class AP (sum of the precisions at
    the positives of the score-sorted list, over the positives); its MAP (the mean over classes)
    and WAP (weighted by each class's positives)."""
    labels, conf = [], []
    for video, length in lengths.items():
        for j in range(1, 26):
            t = (j - 1) / 25 * length
            row = np.zeros(scores[video].shape[1])
            for k, start, end in actions[video]:
                if start <= t <= end:
                    row[k] = 1
            labels.append(row)
            conf.append(scores[video][min(int(t / stride), len(scores[video]) - 1)])
    labels, conf = np.array(labels), np.array(conf)
    aps = []
    for k in range(labels.shape[1]):
        order = np.argsort(-conf[:, k], kind="stable")
        hits = labels[order, k] == 1
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(precision[hits].sum() / hits.sum())
    positives = labels.sum(0)
    return float(np.mean(aps)), float(np.sum(np.array(aps) * positives) / positives.sum())


def _pdan_map(truth: dict, scores: dict[str, np.ndarray]) -> float:
    """A transcription of Dai et al.'s PDAN evaluation on TSU: row `fr` of a video of `T` rows
    is labelled with the actions where `start < fr / fps < end`, `fps = T / duration` (frames,
    as in the TSU file); per class, the precisions at the positives of the score-sorted rows,
    summed, over the positives (the APMeter); the mean over classes whose AP is not zero."""
    labels, conf = [], []
    for video, entry in truth.items():
        rows = len(scores[video])
        fps = rows / entry["duration"]
        label = np.zeros((rows, 51))
        for k, start, end in entry["actions"]:
            for fr in range(rows):
                if start < fr / fps < end:
                    label[fr, k] = 1
        labels.append(label)
        conf.append(scores[video])
    labels, conf = np.concatenate(labels), np.concatenate(conf)
    aps = []
    for k in range(51):
        order = np.argsort(-conf[:, k], kind="stable")
        hits = labels[order, k] == 1
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(precision[hits].sum() / max(hits.sum(), 1))
    aps = np.array(aps)
    return float(aps[aps != 0].mean())


def test_frames_pdan_protocol_on_tsus_own_file(realdata: Path, tmp_path: Path, capsys) -> None:
    """TSU's JSON read natively (`--format tsu`: frames, classes 0-50 named by Action_list) and
    rows labelled as PDAN's loader labels them (`--protocol pdan`): equal to a transcription of
    Dai et al.'s evaluation on random scores, and unlike the pooled protocol; PDAN's pickled
    `(K, T)` output reads the same, and a pickle that names code is refused unrun."""
    full = json.loads((realdata / "tsu" / "smarthome_CS_51.json").read_text())
    videos = sorted(v for v, e in full.items() if e["subset"] == "testing")[:3]
    truth = {v: full[v] for v in videos}
    (tmp_path / "tsu.json").write_text(json.dumps(truth))
    (tmp_path / "Action_list").write_text((realdata / "tsu" / "Action_list").read_text())
    names = [line.split("\t")[1] for line in (tmp_path / "Action_list").read_text().splitlines()]
    rng = np.random.default_rng(5)
    # one row per 16 frames, as TSU's I3D features
    scores = {v: rng.uniform(size=(int(truth[v]["duration"]) // 16, 51)) for v in videos}
    np.savez(tmp_path / "s.npz", classes=np.array(names), **scores)
    argv = ["frames", "--ground-truth", str(tmp_path / "tsu.json"), "--format", "tsu"]
    argv += ["--predictions", str(tmp_path / "s.npz")]
    status, pdan, err = run([*argv, "--protocol", "pdan"], capsys)
    assert status == 0, err
    assert pdan["frame_mAP"] == pytest.approx(_pdan_map(truth, scores), abs=1e-12)
    status, pooled, _ = run(argv, capsys)
    assert status == 0 and pooled["frame_mAP"] != pdan["frame_mAP"]
    # PDAN's own output: {video: (K, T) probabilities} pickled, in the ground truth's class order
    with open(tmp_path / "probs.pkl", "wb") as handle:
        pickle.dump({v: p.T.astype(np.float32) for v, p in scores.items()}, handle)
    argv[-1] = str(tmp_path / "probs.pkl")
    status, pickled, err = run([*argv, "--protocol", "pdan"], capsys)
    assert status == 0, err
    assert pickled["frame_mAP"] == pytest.approx(pdan["frame_mAP"], abs=1e-6)
    with open(tmp_path / "probs.pkl", "wb") as handle:
        pickle.dump({"x": subprocess.Popen}, handle)  # a pickle naming code is never run
    status, _, err = run(argv, capsys)
    assert status == 1 and "subprocess.Popen is not a numpy array" in err


def test_frames_charades_protocol_scores_25_instants_a_video(tmp_path: Path, capsys) -> None:
    """`--protocol charades` equals a transcription of the official evaluator on random scores,
    and differs from pooling every row (a long video no longer outweighs a short one)."""
    header = (
        "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"
    )
    (tmp_path / "Charades_v1_classes.txt").write_text(
        "c000 Sitting down\nc001 Opening a door\nc002 Holding a cup\n"
    )
    lengths = {"AB12C": 30.0, "XY34Z": 7.3, "QQ99Q": 12.0}
    actions = {
        "AB12C": [(0, 0.0, 12.0), (1, 10.0, 30.0)],
        "XY34Z": [(1, 2.0, 4.0), (2, 0.0, 7.3)],
        "QQ99Q": [(0, 5.5, 9.0), (2, 1.2, 2.4)],
    }
    rows = [
        f"{video},S,K,6,7,Yes,x,,x,"
        + ";".join(f"c{k:03d} {start} {end}" for k, start, end in actions[video])
        + f",{length}"
        for video, length in lengths.items()
    ]
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    stride = 0.5
    rng = np.random.default_rng(3)
    scores = {v: rng.uniform(size=(round(length / stride), 3)) for v, length in lengths.items()}
    np.savez(
        tmp_path / "s.npz",
        classes=np.array(["Sitting down", "Opening a door", "Holding a cup"]),
        stride=np.float64(stride),
        **scores,
    )
    argv = ["frames", "--ground-truth", str(csv), "--predictions", str(tmp_path / "s.npz")]
    status, charades, err = run([*argv, "--protocol", "charades"], capsys)
    assert status == 0, err
    expected, expected_weighted = _charades_localize_map(lengths, actions, scores, stride)
    assert charades["frame_mAP"] == pytest.approx(expected, abs=1e-12)
    assert charades["protocol"] == "charades"
    assert charades["frame_wAP"] == pytest.approx(expected_weighted, abs=1e-12)
    status, pooled, _ = run(argv, capsys)
    assert status == 0 and abs(pooled["frame_mAP"] - charades["frame_mAP"]) > 0.01


@pytest.mark.parametrize("problem", ["missing video", "nan", "unknown class", "no column"])
def test_frames_errors_name_the_entry(
    ground_truth: Path, tmp_path: Path, capsys, problem: str
) -> None:
    columns = ["jump", "run"]
    arrays = {v: t * 1.0 for v, t in frame_targets(columns).items()}
    if problem == "missing video":
        del arrays["vid_b"]
    elif problem == "nan":
        arrays["vid_b"][7, 1] = np.nan
    elif problem == "unknown class":
        columns = ["jump", "fly"]
    else:
        columns, arrays = ["jump"], {v: a[:, :1] for v, a in arrays.items()}
    np.savez(tmp_path / "s.npz", classes=np.array(columns), **arrays)
    argv = ["frames", "--ground-truth", str(ground_truth), "--predictions", str(tmp_path / "s.npz")]
    status, _, err = run([*argv, "--subset", "validation"], capsys)
    assert status == 1
    expected = {
        "missing video": "vid_b",
        "nan": "row 7",
        "unknown class": "'fly'",
        "no column": "'run'",
    }
    assert expected[problem] in err


def test_frames_refuse_rows_that_do_not_fit_the_video_and_unreadable_files(
    ground_truth: Path, tmp_path: Path, capsys
) -> None:
    """With `stride` (what crossdistill writes) rows are placed in time: an array padded to
    whole tiles is refused instead of being stretched over the video (perfect scores padded to
    64-step tiles scored 0.44); Inf scores, a .npy and a truncated archive are named."""
    columns = ["jump", "run"]
    arrays = {v: t * 1.0 for v, t in frame_targets(columns).items()}
    path = tmp_path / "s.npz"
    argv = ["frames", "--ground-truth", str(ground_truth), "--predictions", str(path)]
    argv += ["--subset", "validation"]
    steps = {v: len(a) for v, a in arrays.items()}
    stride = np.float64(DATABASE["vid_a"]["duration"] / steps["vid_a"])
    np.savez(path, classes=np.array(columns), stride=stride, **arrays)
    status, result, _ = run(argv, capsys)
    assert status == 0 and result["frame_mAP"] == 1.0
    padded = {v: np.concatenate([a, np.zeros((64 - len(a) % 64, 2))]) for v, a in arrays.items()}
    np.savez(path, classes=np.array(columns), stride=stride, **padded)
    status, _, err = run(argv, capsys)
    assert status == 1 and "rows of" in err and "padded, cut, or another video's" in err
    arrays["vid_a"][3, 0] = np.inf
    np.savez(path, classes=np.array(columns), **arrays)
    status, _, err = run(argv, capsys)
    assert status == 1 and "'vid_a': score inf (not finite) in row 3, class 'jump'" in err
    np.save(tmp_path / "one.npy", arrays["vid_b"])
    status, _, err = run([*argv[:4], str(tmp_path / "one.npy"), *argv[5:]], capsys)
    assert status == 1 and "not an npz archive" in err
    path.write_bytes(path.read_bytes()[:200])
    status, _, err = run(argv, capsys)
    assert status == 1 and "truncated or damaged" in err and "Traceback" not in err


def clip_file(tmp_path: Path, verbs: np.ndarray, nouns: np.ndarray, vl, nl) -> Path:
    heads = {
        "verb": [f"v{i}" for i in range(verbs.shape[1])],
        "noun": [f"n{i}" for i in range(nouns.shape[1])],
    }
    clips = {
        f"clip{i}": {
            "verb": {"label": f"v{vl[i]}", "scores": verbs[i].tolist()},
            "noun": {"label": f"n{nl[i]}", "scores": nouns[i].tolist()},
        }
        for i in range(len(vl))
    }
    return write_json(tmp_path / "clips.json", {"scores": "logits", "heads": heads, "clips": clips})


def test_clips_against_sklearn_and_torchmetrics(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    verbs, nouns = rng.normal(scale=2, size=(150, 8)), rng.normal(scale=2, size=(150, 6))
    vl, nl = rng.integers(0, 8, 150), rng.integers(0, 6, 150)
    status, result, _ = run(
        ["clips", "--predictions", str(clip_file(tmp_path, verbs, nouns, vl, nl))], capsys
    )
    assert status == 0
    for head, logits, labels in (("verb", verbs, vl), ("noun", nouns, nl)):
        for k in (1, 5):
            expected = top_k_accuracy_score(labels, logits, k=k, labels=np.arange(logits.shape[1]))
            assert result[head][f"top{k}"] == pytest.approx(expected)
        probs = torch.from_numpy(logits).softmax(dim=1)
        ece = multiclass_calibration_error(
            probs, torch.from_numpy(labels), logits.shape[1], n_bins=15
        )
        assert result[head]["ece"] == pytest.approx(ece.item(), abs=1e-6)
    both = (verbs.argmax(1) == vl) & (nouns.argmax(1) == nl)
    assert result["action"] == {"top1": pytest.approx(both.mean())}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["clips"]["clip3"]["verb"]["scores"].__setitem__(2, float("nan")), "'clip3'"),
        (lambda d: d["clips"]["clip4"]["noun"].__setitem__("label", "n99"), "'n99'"),
        (lambda d: d["clips"]["clip5"]["verb"]["scores"].pop(), "clip5"),
        (lambda d: d.__setitem__("scores", "probabilities"), "sum to 1"),
        (
            lambda d: d["clips"]["clip6"]["noun"]["scores"].__setitem__(0, float("inf")),
            "clip 'clip6', head 'noun': score inf (not finite) for class 'n0'",
        ),
    ],
)
def test_clips_errors_name_the_entry(tmp_path: Path, capsys, edit, message: str) -> None:
    rng = np.random.default_rng(1)
    path = clip_file(
        tmp_path, rng.normal(size=(10, 4)), rng.normal(size=(10, 3)), [0] * 10, [1] * 10
    )
    data = json.loads(path.read_text())
    edit(data)
    write_json(path, data)
    status, _, err = run(["clips", "--predictions", str(path)], capsys)
    assert status == 1 and message in err


def test_console_script_help() -> None:
    script = Path(sys.executable).with_name("crossdistill")
    out = subprocess.run([script, "evaluate", "--help"], capture_output=True, text=True, check=True)
    for command in ("segments", "frames", "clips"):
        assert command in out.stdout


def test_official_sample_submission_scores_one(realdata: Path, capsys) -> None:
    folder = realdata / "activitynet"
    argv = segments_argv(
        folder / "activity_net.v1-3.json",
        folder / "sample_detection_prediction.json",
        "--subset",
        "validation",
    )
    status, result, err = run(argv, capsys)
    assert status == 0, err
    assert len(result["mAP"]) == 10
    assert all(value == 1.0 for value in result["mAP"].values())
    assert result["average_mAP"] == 1.0


def test_zero_length_official_switch(tmp_path: Path, capsys) -> None:
    """--official: a zero-length prediction takes a zero-length ground-truth segment of its
    class anywhere in the video, as the official evaluators' 0/0 = NaN does; the JSON names the
    conventions used."""
    database = {
        "v": {
            "subset": "validation",
            "duration": 40.0,
            "annotations": [
                {"segment": [5, 5], "label": "jump"},
                {"segment": [10, 20], "label": "jump"},
            ],
        }
    }
    gt = write_json(tmp_path / "gt.json", {"taxonomy": TAXONOMY, "database": database})
    pred = write_json(tmp_path / "p.json", {"results": {"v": [
        {"label": "jump", "score": 0.9, "segment": [7, 7]},
        {"label": "jump", "score": 0.8, "segment": [10, 20]}]}})  # fmt: skip
    status, strict, _ = run(segments_argv(gt, pred), capsys)
    assert status == 0 and strict["average_mAP"] == pytest.approx(0.25)
    assert strict["conventions"] == "strict"
    status, official, _ = run(segments_argv(gt, pred, "--official"), capsys)
    assert status == 0 and official["average_mAP"] == pytest.approx(1.0)
    assert official["conventions"] == "official"


def _official_ap(predictions: list[tuple], truth: list[tuple], tiou: float) -> float:
    """A transcription of the official ActivityNet evaluator's AP for one class and threshold:
    predictions `(video, start, end, score)` by descending score; one whose video has no ground
    truth is a false positive; otherwise the unmatched ground-truth segment of highest tIoU
    (intersection clipped at 0, over the sum of lengths minus it) is taken when tIoU >= the
    threshold, else a false positive; AP is the interpolated area under the precision-recall
    curve, over the ground-truth count."""
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i][3])
    taken: set[int] = set()
    tp, fp = [], []
    for i in order:
        video, start, end, _ = predictions[i]
        candidates = [j for j, g in enumerate(truth) if g[0] == video]
        hit = False
        ious = []
        for j in candidates:
            _, g0, g1 = truth[j]
            inter = max(0.0, min(end, g1) - max(start, g0))
            union = (end - start) + (g1 - g0) - inter
            ious.append((inter / union if union != 0 else float("nan"), j))
        for iou, j in sorted(ious, key=lambda x: -x[0]):
            if iou < tiou:
                break
            if j in taken:
                continue
            taken.add(j)
            hit = True
            break
        tp.append(hit)
        fp.append(not hit)
    tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
    recall = tp_c / len(truth)
    precision = tp_c / (tp_c + fp_c)
    mprec = np.hstack([[0], precision, [0]])
    mrec = np.hstack([[0], recall, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def test_official_scores_unknown_videos_and_malformed_segments_as_the_official_tool(
    tmp_path: Path, capsys
) -> None:
    """Predictions of a video of another subset, of a video the ground truth lacks, segments
    ending before they start and starting before 0: refused by default (the entry named), and under
    --official scored as a transcription of the official evaluator scores them."""
    database = {
        "a": {"subset": "validation", "duration": 60.0, "annotations": [
            {"segment": [5, 15], "label": "jump"}, {"segment": [30, 42], "label": "jump"}]},
        "b": {"subset": "validation", "duration": 50.0, "annotations": [
            {"segment": [0, 8], "label": "jump"}]},
        "c": {"subset": "training", "duration": 30.0, "annotations": [
            {"segment": [1, 9], "label": "jump"}]},
    }  # fmt: skip
    gt = write_json(tmp_path / "gt.json", {"taxonomy": TAXONOMY, "database": database})
    predicted = [
        ("a", 5.5, 15.0, 0.95), ("c", 1.0, 9.0, 0.9), ("zz", 0.0, 5.0, 0.85),
        ("b", -1.0, 8.0, 0.8), ("a", 42.0, 30.0, 0.75), ("a", 29.0, 41.0, 0.7),
        ("b", 20.0, 30.0, 0.6),
    ]  # fmt: skip
    results: dict[str, list] = {}
    for video, start, end, score in predicted:
        results.setdefault(video, []).append(
            {"label": "jump", "score": score, "segment": [start, end]}
        )
    pred = write_json(tmp_path / "p.json", {"results": results})
    base = segments_argv(gt, pred, "--subset", "validation", "--tiou", "0.5", "0.7", "0.9")
    status, _, err = run(base, capsys)
    assert status == 1 and "video 'a': segment ends at 30 s, before its start at 42 s" in err
    status, official, err = run([*base, "--official"], capsys)
    assert status == 0, err
    truth = [("a", 5.0, 15.0), ("a", 30.0, 42.0), ("b", 0.0, 8.0)]
    for tiou in (0.5, 0.7, 0.9):
        expected = _official_ap(predicted, truth, tiou)
        assert official["mAP"][f"{tiou:g}"] == pytest.approx(expected, abs=1e-12), tiou
    assert 0 < official["mAP"]["0.9"] < official["mAP"]["0.5"] < 1


def test_evaluation_imports_neither_torch_nor_lightning() -> None:
    """`crossdistill evaluate` runs the numpy algorithms: importing them and the evaluation code
    loads no torch, torchmetrics or Lightning (it took seconds; the metric itself 0.1 s)."""
    import subprocess
    import sys

    code = (
        "import sys, lightning_modules.evaluate, lightning_modules.commands.evaluate; "
        "heavy = ('torch', 'torchmetrics', 'pytorch_lightning'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_segments_reads_actionformers_prediction_layout(
    realdata: Path, tmp_path: Path, capsys
) -> None:
    """ActionFormer's own predictions (`{"database": {video: [{segment, label_id, scores}]}}`)
    score as the same predictions in the ActivityNet results layout, classes named by the ground
    truth's label_id; ground truth without label_id cannot name them, and says so."""
    gt = realdata / "thumos14" / "thumos14.json"
    database = json.loads(gt.read_text())["database"]
    videos = sorted(v for v, e in database.items() if e["subset"] == "Test")[:4]
    rng = np.random.default_rng(2)
    actionformer: dict[str, list] = {}
    results: dict[str, list] = {}
    for video in videos:
        for a in database[video]["annotations"]:
            start, end = (t + rng.normal(0, 1.0) for t in a["segment"])
            score = float(rng.uniform())
            actionformer.setdefault(video, []).append(
                {"segment": [start, end], "label_id": a["label_id"], "scores": score}
            )
            results.setdefault(video, []).append(
                {"segment": [start, end], "label": a["label"], "score": score}
            )
    theirs = write_json(tmp_path / "actionformer.json", {"database": actionformer})
    ours = write_json(tmp_path / "results.json", {"results": results})
    tious = ["--tiou", "0.3", "0.5", "0.7", "--official"]
    subset = ["--subset", "test"]
    status, expected, err = run(segments_argv(gt, ours, *subset, *tious), capsys)
    assert status == 0, err
    status, got, err = run(segments_argv(gt, theirs, *subset, *tious), capsys)
    assert status == 0, err
    assert got == expected and 0 < got["average_mAP"] < 1
    plain = {
        "database": {v: {k: e[k] for k in ("subset", "duration")} for v, e in database.items()}
    }
    for video in videos:
        plain["database"][video]["annotations"] = [
            {"segment": a["segment"], "label": a["label"]} for a in database[video]["annotations"]
        ]
    without_ids = write_json(tmp_path / "gt.json", plain)
    status, _, err = run(segments_argv(without_ids, theirs, *subset), capsys)
    assert status == 1 and "label_id" in err and "Fix:" in err


def test_per_class_table_on_stderr_keeps_stdout_json(
    ground_truth: Path, tmp_path: Path, capsys
) -> None:
    """--per-class: a table of the per-class APs (worst first) on stderr, the JSON on stdout."""
    results = perfect_results()
    results["vid_a"][0] = {"label": "jump", "score": 0.9, "segment": [14, 30]}  # tIoU 16/20
    pred = write_json(tmp_path / "shifted.json", {"results": results})
    argv = segments_argv(ground_truth, pred, "--subset", "validation", "--tiou", "0.5", "0.85")
    status, result, err = run([*argv, "--per-class"], capsys)
    assert status == 0 and result["per_class"]["jump"]["0.85"] == 0.5
    lines = err.strip().splitlines()
    assert lines[0].split() == ["class", "0.5", "0.85", "average"]
    assert lines[1].split() == ["jump", "100.00", "50.00", "75.00"]
    assert lines[2].split() == ["run", "100.00", "100.00", "100.00"]
