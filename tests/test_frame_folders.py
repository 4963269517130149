"""Folders of frames (EPIC-KITCHENS' JPEGs) read as video: the same frames on the same grid as
the video they came from; their naming, frame rate and data-check problems."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid
from datamodules.sources import DataError, VideoSource
from datamodules.sources.decoders import DecordReader, FrameFolder, frame_name
from tests.data_helpers import INDEX_VIDEO_GRIDS, read_indices, write_index_video

REPO_ROOT = Path(__file__).resolve().parents[1]
FPS = 10.0
FRAMES = 120


def write_frames(video: Path, folder: Path, template: str, first: int) -> np.ndarray:
    """The decoded frames of `video` written as JPEGs named by `template` from `first`."""
    reader = DecordReader(video)
    frames = reader.frames(np.arange(reader.frame_count))
    folder.mkdir(parents=True)
    for index, frame in enumerate(frames):
        name = frame_name(template, first + index)
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return frames


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frame_folders")
    video = write_index_video(folder / "videos" / "idx.mp4", FRAMES, FPS)
    write_frames(video, folder / "rgb_frames" / "idx", "frame_{:010d}.jpg", 1)
    write_frames(video, folder / "rawframes" / "idx", "img_{:05d}.jpg", 0)
    return folder


def record(fps: float | None = FPS) -> VideoRecord:
    return VideoRecord("idx", "training", FRAMES / FPS, fps=fps)


def bound(source, root: Path):
    source.bind("rgb", root, None)
    return source


@pytest.mark.parametrize("grid", INDEX_VIDEO_GRIDS)
def test_a_frame_folder_decodes_to_the_frames_of_its_video(root: Path, grid: TimeGrid) -> None:
    from_video = bound(VideoSource("videos/{video_id}.mp4", size=48), root)
    from_frames = bound(VideoSource("rgb_frames/{video_id}", size=48, fps=FPS), root)
    assert from_frames.layout == FrameFolder(("frame_{:010d}.jpg",), 1, FPS)
    expected = from_video.load(record(), grid)["rgb"]
    frames = from_frames.load(record(), grid)["rgb"]
    assert frames.shape == expected.shape
    assert (frames - expected).abs().max() < 6 / 255  # JPEG's loss only
    np.testing.assert_array_equal(read_indices(frames), read_indices(expected))


def test_template_and_first_frame_are_configurable(root: Path) -> None:
    grid = TimeGrid(0.0, 12.0, 120)
    epic = bound(VideoSource("rgb_frames/{video_id}", size=32, fps=FPS), root)
    mmaction = bound(
        VideoSource("rawframes/{video_id}", size=32, frames="img_{:05d}.jpg", first_frame=0),
        root,
    )
    expected = epic.load(record(), grid)["rgb"]
    # the frame rate from the annotation when the config has none
    assert (mmaction.load(record(), grid)["rgb"] - expected).abs().max() < 1e-6
    assert np.array_equal(read_indices(expected), np.arange(120))
    assert epic.check(record()) == [] and mmaction.check(record()) == []
    assert epic.duration(record()) == pytest.approx(FRAMES / FPS)


def test_frame_folder_problems_name_the_folder_and_the_fix(root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "rgb_frames" / "idx"
    folder.mkdir(parents=True)
    for path in (root / "rgb_frames" / "idx").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "frame_0000000007.jpg").unlink()
    source = bound(VideoSource("rgb_frames/{video_id}", fps=FPS), tmp_path)
    [problem] = source.check(record())
    assert str(folder) in str(problem)
    assert "misses 1 frame(s) named 'frame_{:010d}.jpg' (7) of 1..120" in problem.what
    with pytest.raises(ValueError, match=r"frame_0000000007\.jpg"):
        source.load(record(), TimeGrid(0.0, 1.0, 10))
    (folder / f"frame_{FRAMES:010d}.jpg").write_bytes(b"not a jpeg")
    (folder / "frame_0000000007.jpg").write_bytes(
        (root / "rgb_frames/idx/frame_0000000007.jpg").read_bytes()
    )
    [problem] = source.check(record())
    assert f"frame_{FRAMES:010d}.jpg" in problem.what and "unreadable" in problem.what
    wrong = bound(VideoSource("rgb_frames/{video_id}", fps=FPS, frames="img_{:05d}.jpg"), tmp_path)
    [problem] = wrong.check(record())
    assert (
        "has no frames named 'img_{:05d}.jpg'" in problem.what and "init_args.frames" in problem.fix
    )
    late = bound(VideoSource("rawframes/{video_id}", fps=FPS, frames="img_{:05d}.jpg"), root)
    assert "numbers frames from 0, not 1" in late.check(record())[0].what
    missing = bound(VideoSource("nowhere/{video_id}", fps=FPS), tmp_path)
    assert "file not found" in missing.check(record())[0].what


def test_a_frame_folder_without_a_frame_rate_is_refused(root: Path) -> None:
    source = bound(VideoSource("rgb_frames/{video_id}"), root)
    with pytest.raises(DataError, match=r"init_args\.fps"):
        source.load(record(fps=None), TimeGrid(0.0, 1.0, 10))


@pytest.mark.parametrize(
    "frames", ["frame.jpg", "frame_{}_{}.jpg", "frame_{:s}.jpg", ["a_{:03d}.jpg"] * 3]
)
def test_bad_frame_templates_fail_at_construction(frames) -> None:
    with pytest.raises(ValueError, match=r"template|frame"):
        VideoSource("frames/{video_id}", frames=frames)
