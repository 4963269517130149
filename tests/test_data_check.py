"""`crossdistill data-check`: passes on a generated benchmark, names every broken file of a
broken copy and exits non-zero."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_modules.commands.data_check import main
from tests.conftest import REPO_ROOT
from tests.data_helpers import copy_benchmark, with_random_features

CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")
CONFIG = str(REPO_ROOT / "configs" / "data" / "synthetic.yaml")


@pytest.fixture(scope="module")
def broken(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy with one truncated mp4, one deleted pose file, one unknown label."""
    root = copy_benchmark(bench, tmp_path_factory.mktemp("broken") / "bench")
    annotations = root / "annotations" / "activitynet.json"
    data = json.loads(annotations.read_text())
    ids = sorted(data["database"])
    video = root / "videos" / f"{ids[0]}.mp4"
    video.write_bytes(video.read_bytes()[:4000])
    pose = root / "pose" / f"{ids[1]}.npy"
    pose.unlink()
    labelled = next(v for v in ids[2:] if data["database"][v]["annotations"])
    data["database"][labelled]["annotations"][0]["label"] = "moonwalk"
    annotations.write_text(json.dumps(data))
    return {"root": root, "video": video, "pose": pose, "annotations": annotations}


def test_cli_passes_on_a_generated_benchmark(bench: Path) -> None:
    done = subprocess.run(
        [CONSOLE_SCRIPT, "data-check", "--config", CONFIG, f"--data.init_args.root={bench}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every file of every subset is ready" in done.stdout
    assert "training" in done.stdout and "4/4" in done.stdout


def test_broken_copy_fails_naming_all_three_files(
    broken: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    status = main(["--config", CONFIG, f"--data.init_args.root={broken['root']}"])
    out = capsys.readouterr().out
    assert status == 1
    for key in ("video", "pose", "annotations"):
        assert str(broken[key]) in out, key
    assert "'moonwalk'" in out and "FAIL" in out
    assert out.count("Fix:") >= 3


def test_file_problems_only_block_training_when_missing_is_error(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = copy_benchmark(bench, tmp_path / "bench")
    database = json.loads((root / "annotations" / "activitynet.json").read_text())["database"]
    training = sorted(v for v, entry in database.items() if entry["subset"] == "training")
    pose = root / "pose" / f"{training[0]}.npy"
    pose.unlink()
    args = ["--config", CONFIG, f"--data.init_args.root={root}"]
    assert main(args) == 1
    assert main([*args, "--data.init_args.missing=skip"]) == 0
    out = capsys.readouterr().out
    assert str(pose) in out and "will be left out" in out


def test_empty_subset_and_full_lightning_configs(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("seed_everything: 1\ntrainer: {max_epochs: 2}\n")
    model = str(REPO_ROOT / "configs" / "teacher" / "dense_rgb.yaml")
    args = ["--config", CONFIG, "--config", model, "--config", str(experiment)]
    args.append(f"--data.init_args.root={bench}")
    assert main([*args, "--data.init_args.test_subset=holdout"]) == 1
    assert "no subset 'holdout'" in capsys.readouterr().out


def test_segments_after_the_video_end_are_reported_and_block_when_most_are(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """One late segment (a known annotation error, THUMOS14's video_test_0000270) is listed;
    times written in frames put most segments after their video's end, which blocks."""
    root = copy_benchmark(bench, tmp_path / "bench")
    path = root / "annotations" / "activitynet.json"
    original = json.loads(path.read_text())
    args = ["--config", CONFIG, f"--data.init_args.root={root}"]
    one = json.loads(json.dumps(original))
    video_id, entry = next((v, e) for v, e in one["database"].items() if e["annotations"])
    entry["annotations"][0]["segment"] = [entry["duration"] + 5, entry["duration"] + 9]
    path.write_text(json.dumps(one))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 of" in out and "start after their video's end" in out and video_id in out
    frames = json.loads(json.dumps(original))
    for entry in frames["database"].values():
        for annotation in entry["annotations"]:
            annotation["segment"] = [t * 10 for t in annotation["segment"]]  # frames at 10 fps
    path.write_text(json.dumps(frames))
    assert main(args) == 1
    assert "the times are not in seconds" in capsys.readouterr().out


def test_an_annotation_error_keeps_its_line(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = copy_benchmark(bench, tmp_path / "bench")
    path = root / "annotations" / "activitynet.json"
    path.write_text('{"database": {\n "a": \n}}')
    assert main(["--config", CONFIG, f"--data.init_args.root={root}"]) == 1
    assert f"{path}:3" in capsys.readouterr().out


def test_deep_check_finds_damage_inside_a_video(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Bytes overwritten in the middle of a video: the quick check (the last frame decodes)
    passes, and the fit would fail from a DataLoader worker; `--deep` decodes every frame."""
    import numpy as np

    from tests.data_helpers import write_index_video

    root = copy_benchmark(bench, tmp_path / "bench")
    database = json.loads((root / "annotations" / "activitynet.json").read_text())["database"]
    last = sorted(v for v, entry in database.items() if entry["subset"] == "training")[-1]
    video = root / "videos" / f"{last}.mp4"  # not the sample data-check builds
    frames = round(database[last]["duration"] * 10)
    write_index_video(video, frames)  # a key frame every 12 frames, as real videos have
    data = bytearray(video.read_bytes())
    start, end = data.find(b"mdat"), data.find(b"moov")
    a, b = start + (end - start) // 3, start + (end - start) // 2
    data[a:b] = np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    args = ["--config", CONFIG, f"--data.init_args.root={root}", "--data.init_args.load=[rgb]"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--deep=true"]) == 1
    assert str(video) in capsys.readouterr().out


FEATURES = str(REPO_ROOT / "configs" / "data" / "synthetic_features.yaml")
RGB_TEACHER = str(REPO_ROOT / "configs" / "teacher" / "dense_features_rgb.yaml")
MODEL = "--model.init_args.model.init_args"


@pytest.fixture(scope="module")
def features(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_random_features(bench, tmp_path_factory.mktemp("features") / "bench")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ([], None),
        (
            [f"{MODEL}.encoder.init_args.in_channels=1024"],
            "encoder reads 1024 channels of 'rgb', the data's rgb features are 128 wide",
        ),
        (
            [f"{MODEL}.head.init_args.num_classes=157"],
            "the model predicts 157 classes, the data has 8",
        ),
        (
            [f"{MODEL}.encoder.init_args.modality=flow"],
            r"reads modalities \['flow'\], the data config loads \['rgb'\]",
        ),
    ],
    ids=["fits", "width", "classes", "modality"],
)  # fmt: skip
def test_a_model_config_is_checked_against_the_data(
    features: Path, change: list[str], message: str | None, capsys: pytest.CaptureFixture
) -> None:
    """With the model's config among the files, data-check says whether the model fits the data
    (widths, classes, modalities) instead of training into a shape error."""
    args = ["--config", FEATURES, "--config", RGB_TEACHER, f"--data.init_args.root={features}"]
    status = main([*args, *change])
    out = capsys.readouterr().out
    if message is None:
        assert status == 0 and "model: TeacherModule fits the data" in out, out
    else:
        assert status == 1 and "does not fit the data" in out and "Fix:" in out, out
        assert re.search(message, out), out


def test_a_model_that_cannot_be_built_is_a_problem_with_its_fix_not_a_traceback(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A torchvision backbone whose weights file is missing: one line naming the file and how to
    make it, exit 1. A distillation config is checked for its student alone: teacher
    checkpoints that do not exist yet (a table not trained) are not loaded."""
    monkeypatch.chdir(tmp_path)  # the config's relative weights path does not exist here
    clips = str(REPO_ROOT / "configs" / "data" / "synthetic_clips.yaml")
    model = str(REPO_ROOT / "configs" / "teacher" / "clips_r2plus1d_rgb.yaml")
    status = main(["--config", clips, "--config", model, f"--data.init_args.root={bench}"])
    out = capsys.readouterr().out
    assert status == 1 and "the model cannot be built: weights file" in out
    assert "Fix: save torchvision's weights" in out and "Traceback" not in out
    student = [str(REPO_ROOT / "configs" / name) for name in (
        "teacher/clips_rgb.yaml", "distill/clips_radevski.yaml")]  # fmt: skip
    args = [a for path in student for a in ("--config", path)]
    teachers = [f"--model.init_args.teachers.{t}={tmp_path / 'none.ckpt'}" for t in ("flow",)]
    assert main(["--config", clips, *args, *teachers, f"--data.init_args.root={bench}"]) == 0
    assert "model: DistillModule fits the data" in capsys.readouterr().out
