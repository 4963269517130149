"""Synthetic benchmark: deterministic, real formats that decode, motion that matches labels."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import decord
import numpy as np
import pytest

from datamodules.optical_flow import dequantize_flow
from datamodules.synthetic import SyntheticConfig, generate_benchmark
from datamodules.synthetic.actions import CLASS_NAMES, JOINTS
from datamodules.synthetic.generator import SUBSETS, BenchmarkRootError

CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")
SMALL = SyntheticConfig(videos=8, seed=5, min_duration=10.0, max_duration=16.0)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_benchmark(root, SMALL, workers=2)
    return root


def _database(root: Path) -> dict:
    return json.loads((root / "annotations" / "activitynet.json").read_text())["database"]


def test_cli_twice_gives_identical_files(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        cmd = [CONSOLE_SCRIPT, "synthetic", "--out", out, "--videos", "12", "--seed", "3"]
        subprocess.run(cmd, check=True, capture_output=True)
        outputs.append(out)
    a, b = outputs
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "summary.md")
    assert len(files) == 4 * 12 + 1 + 4 + 1  # modalities, JSON, 3 CSVs + classes, manifest
    for relative in files:
        assert (a / relative).read_bytes() == (b / relative).read_bytes(), relative
    other = tmp_path / "c"
    subprocess.run(
        [CONSOLE_SCRIPT, "synthetic", "--out", other, "--videos", "12", "--seed", "4"],
        check=True,
        capture_output=True,
    )
    assert (other / "annotations" / "activitynet.json").read_bytes() != (
        a / "annotations" / "activitynet.json"
    ).read_bytes()


def test_rerun_reuses_complete_benchmark_and_refuses_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = [
        CONSOLE_SCRIPT,
        "synthetic",
        "--out",
        out,
        "--videos",
        "3",
        "--min_duration",
        "4",
        "--max_duration",
        "5",
    ]
    subprocess.run(args, check=True, capture_output=True)
    again = subprocess.run(args, check=True, capture_output=True, text=True)
    assert "already complete" in again.stdout
    changed = subprocess.run([*args[:-1], "6"], check=True, capture_output=True, text=True)
    assert "already complete" not in changed.stdout
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(BenchmarkRootError, match="holds no synthetic benchmark"):
        generate_benchmark(foreign, SyntheticConfig(videos=3))
    assert (foreign / "thesis.tex").read_text() == "keep me"


def test_subsets_and_manifest(bench: Path) -> None:
    manifest = json.loads((bench / "benchmark.json").read_text())
    database = _database(bench)
    assert set(database) == {f"syn_{i:04d}" for i in range(SMALL.videos)}
    counts = {s: sum(v["subset"] == s for v in database.values()) for s in SUBSETS}
    assert all(n >= 1 for n in counts.values()) and counts == manifest["subsets"]
    assert [c["name"] for c in manifest["classes"]] == list(CLASS_NAMES)
    for video in database.values():
        assert SMALL.min_duration - 0.1 <= video["duration"] <= SMALL.max_duration + 0.1
        for annotation in video["annotations"]:
            start, end = annotation["segment"]
            assert 0 <= start < end <= video["duration"] and annotation["label"] in CLASS_NAMES


def test_every_file_decodes_on_the_annotated_grid(bench: Path) -> None:
    for video_id, video in _database(bench).items():
        n_frames = round(video["duration"] * SMALL.fps)
        for modality in ("videos", "flow"):
            reader = decord.VideoReader(str(bench / modality / f"{video_id}.mp4"))
            assert len(reader) == n_frames and reader.get_avg_fps() == pytest.approx(SMALL.fps)
            assert reader[0].shape == (SMALL.size, SMALL.size, 3)
        pose = np.load(bench / "pose" / f"{video_id}.npy")
        assert pose.shape == (n_frames, len(JOINTS), 3) and pose.dtype == np.float32
        dropped = pose[..., 2] == 0
        assert 0 < dropped.mean() < 0.2, "keypoints should have a few dropped joints"
        boxes = json.loads((bench / "boxes" / f"{video_id}.json").read_text())
        assert [f["frame"] for f in boxes["frames"]] == list(range(n_frames))
        labels = [label for frame in boxes["frames"] for label in frame["labels"]]
        assert {label["category"] for label in labels} <= set(boxes["categories"])
        person_frames = sum(
            any(x["category"] == "person" for x in f["labels"]) for f in boxes["frames"]
        )
        assert 0.8 * n_frames < person_frames < n_frames, (
            "the detector should miss the actor sometimes"
        )


def test_json_and_csv_describe_the_same_segments(bench: Path) -> None:
    database = _database(bench)
    classes = dict(
        line.split(" ", 1)
        for line in (bench / "annotations" / "charades_classes.txt").read_text().splitlines()
    )
    seen = set()
    for subset in SUBSETS:
        with open(bench / "annotations" / f"charades_{subset}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            video = database[row["id"]]
            assert video["subset"] == subset
            assert float(row["length"]) == pytest.approx(video["duration"], abs=0.01)
            from_csv = sorted(
                (classes[code], float(s), float(e))
                for code, s, e in (item.split() for item in row["actions"].split(";") if item)
            )
            from_json = sorted((a["label"], *a["segment"]) for a in video["annotations"])
            assert len(from_csv) == len(from_json)
            for (label_c, s_c, e_c), (label_j, s_j, e_j) in zip(from_csv, from_json, strict=True):
                assert (
                    label_c == label_j
                    and s_c == pytest.approx(s_j, abs=0.01)
                    and e_c == pytest.approx(e_j, abs=0.01)
                )
            seen.add(row["id"])
    assert seen == set(database)


def test_flow_inside_the_actor_box_points_the_annotated_way(bench: Path) -> None:
    """Mean x-flow inside the detected actor box: negative in walk_left, positive in walk_right."""
    checked = 0
    for video_id, video in _database(bench).items():
        n_frames = round(video["duration"] * SMALL.fps)
        flow = dequantize_flow(
            decord.VideoReader(str(bench / "flow" / f"{video_id}.mp4"))
            .get_batch(list(range(n_frames)))
            .asnumpy()
        )
        frames = json.loads((bench / "boxes" / f"{video_id}.json").read_text())["frames"]
        for annotation in video["annotations"]:
            if annotation["label"] not in ("walk_left", "walk_right"):
                continue
            start, end = (round(t * SMALL.fps) for t in annotation["segment"])
            values = []
            for t in range(start, end - 1):
                for box in (b["box2d"] for b in frames[t]["labels"] if b["category"] == "person"):
                    x1, y1 = int(box["x1"]), int(box["y1"])
                    x2, y2 = int(np.ceil(box["x2"])) + 1, int(np.ceil(box["y2"])) + 1
                    values.append(flow[t, y1:y2, x1:x2, 0].mean())
            mean_x = float(np.mean(values))
            expected_sign = -1 if annotation["label"] == "walk_left" else 1
            assert expected_sign * mean_x > 0.2, (video_id, annotation, mean_x)
            checked += 1
    assert checked >= 3


def test_keypoints_follow_the_annotated_motion(bench: Path) -> None:
    """The hip keypoint travels left in walk_left and right in walk_right."""
    hip = JOINTS.index("hip")
    checked = 0
    for video_id, video in _database(bench).items():
        pose = np.load(bench / "pose" / f"{video_id}.npy")
        for annotation in video["annotations"]:
            if annotation["label"] not in ("walk_left", "walk_right"):
                continue
            start, end = (round(t * SMALL.fps) for t in annotation["segment"])
            seen = pose[start:end, hip]
            seen = seen[seen[:, 2] > 0]
            travel = seen[-1, 0] - seen[0, 0]
            assert (travel < -5) if annotation["label"] == "walk_left" else (travel > 5)
            checked += 1
    assert checked >= 3


def test_appearance_varies_between_videos(bench: Path) -> None:
    """Backgrounds differ per video, so a label cannot be read off a colour."""
    means = [
        decord.VideoReader(str(p))[0].asnumpy().reshape(-1, 3).mean(0)
        for p in sorted((bench / "videos").glob("*.mp4"))
    ]
    assert np.std(means, axis=0).mean() > 5.0
