"""`crossdistill flow`: each method on a folder of two videos, both formats read back by
FlowSource, resume, unreadable videos and other errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid
from datamodules.optical_flow import (
    OpenCVFlow,
    RaftFlow,
    compute_flow,
    dequantize_flow,
    quantize_flow,
)
from datamodules.sources import FlowSource
from datamodules.sources.decoders import PyAVReader
from datamodules.video_io import write_video
from lightning_modules.commands import main
from tests.data_helpers import write_videos

REPO_ROOT = Path(__file__).resolve().parents[1]
FPS = 10.0
FRAMES = 6
SIDE = 40
BOUND = 20.0
QUANTUM = BOUND / 127.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_videos(tmp_path_factory.mktemp("flow_videos") / "videos")


def decoded(video: Path) -> np.ndarray:
    return np.stack(list(PyAVReader(video).stream()))


def read_back(root: Path, path: str, video_id: str, **options) -> np.ndarray:
    """Flow in pixels `(T, H, W, 2)` on the frame grid, read by FlowSource."""
    source = FlowSource(path, bound=BOUND, size=SIDE, **options)
    source.bind("flow", root, None)
    record = VideoRecord(video_id, "training", FRAMES / FPS, fps=FPS)
    assert source.check(record) == []
    flow = source.load(record, TimeGrid(0.0, FRAMES / FPS, FRAMES))["flow"].numpy()
    return flow.transpose(1, 2, 3, 0) * BOUND


def run_flow(videos: Path, out: Path, *options: str) -> int:
    return main(["flow", "--videos", str(videos), "--out", str(out), *options])


@pytest.mark.parametrize("method", ["dis", "tvl1"])
def test_both_formats_read_back_as_the_computed_flow(
    videos: Path, tmp_path: Path, method: str
) -> None:
    assert run_flow(videos, tmp_path / "video", "--method", method, "--workers", "2") == 0
    assert run_flow(videos, tmp_path / "jpeg", "--method", method, "--format", "jpeg") == 0
    for video_id in ("left", "down"):
        expected = compute_flow(decoded(videos / f"{video_id}.mp4"), OpenCVFlow(method))
        stored = dequantize_flow(quantize_flow(expected, BOUND), BOUND)
        as_video = read_back(tmp_path, "video/{video_id}.mp4", video_id)
        # lossless: the quantised flow, to float rounding
        np.testing.assert_allclose(as_video, stored, atol=1e-5)
        as_jpeg = read_back(tmp_path, "jpeg/{video_id}", video_id, fps=FPS)
        error = np.abs(as_jpeg - stored)  # JPEG's own loss on top of the quantisation
        assert error.mean() < 0.5 * QUANTUM and error.max() <= 12 * QUANTUM
        assert len(list((tmp_path / "jpeg" / video_id).glob("flow_x_*.jpg"))) == FRAMES - 1
        assert (tmp_path / "jpeg" / video_id / "flow_y_00001.jpg").is_file()
    # the motion is there: x one pixel per frame in both, y two in `down`
    np.testing.assert_allclose(np.median(as_video[..., 0]), 1.0, atol=0.2)
    np.testing.assert_allclose(np.median(as_video[..., 1]), 2.0, atol=0.2)


def test_raft_from_a_local_weights_file(videos: Path, tmp_path: Path) -> None:
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    torch.save(raft_small().state_dict(), tmp_path / "raft_small.pth")
    options = [
        "--method",
        "raft",
        "--raft-model",
        "small",
        "--weights",
        str(tmp_path / "raft_small.pth"),
    ]
    assert run_flow(videos, tmp_path / "raft", *options) == 0
    raft = RaftFlow(tmp_path / "raft_small.pth", "small")
    expected = compute_flow(decoded(videos / "down.mp4"), raft)
    stored = dequantize_flow(quantize_flow(expected, BOUND), BOUND)
    np.testing.assert_allclose(
        read_back(tmp_path, "raft/{video_id}.mp4", "down"), stored, atol=QUANTUM
    )


def test_raft_without_its_weights_is_one_clear_error(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_flow(videos, tmp_path / "out", "--method", "raft", "--weights", "missing.pth") == 1
    err = capsys.readouterr().err
    assert "RAFT weights not found: missing.pth" in err and "nothing is downloaded" in err
    assert run_flow(videos, tmp_path / "out", "--method", "raft") == 1
    assert "--weights" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_tvl1_without_opencv_contrib_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cv2, "optflow", raising=False)
    with pytest.raises(RuntimeError, match="pip install opencv-contrib-python-headless"):
        OpenCVFlow("tvl1")


def test_resume_skips_complete_outputs_and_redoes_broken_ones(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "flow"
    assert run_flow(videos, out) == 0
    assert run_flow(videos, out / "jpeg", "--format", "jpeg") == 0
    capsys.readouterr()
    complete = out / "left.mp4"
    before = complete.stat().st_mtime_ns
    # a half-written file under the final name (from a crash of some other writer) ...
    half = out / "down.mp4"
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    # ... and a leftover of an interrupted run
    (out / ".partial").mkdir()
    (out / ".partial" / "down.mp4").write_bytes(b"interrupted")
    assert run_flow(videos, out) == 0
    lines = capsys.readouterr().out
    assert "left: complete, skipped" in lines and "down: 6 frames" in lines
    assert complete.stat().st_mtime_ns == before
    assert not (out / ".partial").exists()
    expected = compute_flow(decoded(videos / "down.mp4"))
    np.testing.assert_allclose(
        read_back(tmp_path, "flow/{video_id}.mp4", "down"),
        dequantize_flow(quantize_flow(expected, BOUND), BOUND),
        atol=1e-5,
    )
    # a JPEG folder missing its last pair is redone
    (out / "jpeg" / "left" / f"flow_y_{FRAMES - 1:05d}.jpg").unlink()
    assert run_flow(videos, out / "jpeg", "--format", "jpeg") == 0
    lines = capsys.readouterr().out
    assert "down: complete, skipped" in lines and "left: 6 frames" in lines
    assert len(list((out / "jpeg" / "left").iterdir())) == 2 * (FRAMES - 1)


def test_an_unreadable_video_is_named_and_the_others_are_done(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in videos.iterdir():
        (folder / video.name).write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    inputs = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert run_flow(folder, tmp_path / "out", "--workers", "2") == 1
    err = capsys.readouterr().err
    assert "1 of 3 videos failed" in err and f"{folder / 'broken.mp4'}: cannot be read" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["down.mp4", "left.mp4"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == inputs  # inputs untouched


def test_output_over_the_inputs_is_refused(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "left.mp4").write_bytes((videos / "left.mp4").read_bytes())
    assert run_flow(folder, folder) == 1
    assert "would overwrite it" in capsys.readouterr().err
    assert (folder / "left.mp4").read_bytes() == (videos / "left.mp4").read_bytes()


def test_data_check_reports_missing_and_odd_jpeg_frames(videos: Path, tmp_path: Path) -> None:
    assert run_flow(videos, tmp_path / "jpeg", "--format", "jpeg") == 0
    folder = tmp_path / "jpeg" / "left"
    (folder / "flow_x_00003.jpg").unlink()
    (folder / "flow_y_00004.jpg").unlink()
    source = FlowSource("jpeg/{video_id}", bound=BOUND, size=SIDE, fps=FPS)
    source.bind("flow", tmp_path, None)
    problems = [str(p) for p in source.check(VideoRecord("left", "training", 0.6, fps=FPS))]
    assert any("misses 1 frame(s) named 'flow_x_{:05d}.jpg' (3) of 1..5" in p for p in problems)
    assert any("misses 1 frame(s) named 'flow_y_{:05d}.jpg' (4)" in p for p in problems)
    renamed = FlowSource(
        "jpeg/{video_id}", bound=BOUND, fps=FPS, frames=["x_{:05d}.jpg", "y_{:05d}.jpg"]
    )
    renamed.bind("flow", tmp_path, None)
    problems = [str(p) for p in renamed.check(VideoRecord("down", "training", 0.6, fps=FPS))]
    assert problems and "has no frames named 'x_{:05d}.jpg'" in problems[0]


def test_jpeg_flow_without_a_frame_rate_says_where_to_give_it(videos: Path, tmp_path: Path) -> None:
    assert run_flow(videos, tmp_path / "jpeg", "--format", "jpeg") == 0
    source = FlowSource("jpeg/{video_id}", bound=BOUND)
    source.bind("flow", tmp_path, None)
    [problem] = source.check(VideoRecord("left", "training", 0.6, fps=None))
    assert "frame rate of the frame folder is unknown" in str(problem)
    assert "init_args.fps" in str(problem)


def test_a_folder_of_flow_with_other_settings_is_not_mixed(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_flow(videos, tmp_path / "flow") == 0
    assert run_flow(videos, tmp_path / "flow", "--bound", "10") == 1
    assert "holds flow computed with other settings" in capsys.readouterr().err
    recorded = json.loads((tmp_path / "flow" / "flow.json").read_text())
    assert recorded["settings"]["bound"] == 20.0 and recorded["settings"]["method"] == "dis"
    assert recorded["videos"] == {
        "down": {"fps": FPS, "frames": FRAMES},
        "left": {"fps": FPS, "frames": FRAMES},
    }


def test_a_video_of_one_frame_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.data_helpers import textured_frames

    write_video(tmp_path / "videos" / "still.mp4", textured_frames((0, 0), count=1), FPS)
    assert run_flow(tmp_path / "videos", tmp_path / "flow") == 1
    assert "still.mp4: has 1 frame(s); flow needs 2" in capsys.readouterr().err
