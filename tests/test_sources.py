"""Modality sources: frame-accurate decoding, the grid rules per file kind, errors naming files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid
from datamodules.optical_flow import quantize_flow
from datamodules.sources import (
    BoxSource,
    DataError,
    FeatureSource,
    FlowSource,
    KeypointSource,
    VideoSource,
)
from datamodules.sources.base import ReaderCache
from datamodules.video_io import write_video
from tests.data_helpers import INDEX_VIDEO_GRIDS, read_indices, write_index_video

FPS = 10.0
FRAMES = 120


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    write_index_video(folder / "videos" / "idx.mp4", FRAMES, FPS)
    return folder


def record(duration: float = FRAMES / FPS, video_id: str = "idx", fps: float | None = FPS):
    return VideoRecord(video_id, "training", duration, fps=fps)


def bound(source, root: Path, name: str = "m"):
    source.bind(name, root, None)
    return source


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("grid", INDEX_VIDEO_GRIDS)
def test_video_returns_the_frame_on_screen_at_each_step(root: Path, backend: str, grid) -> None:
    source = bound(VideoSource("videos/{video_id}.mp4", size=48, backend=backend), root)
    rgb = source.load(record(), grid)["m"]
    assert rgb.shape == (3, grid.steps, 48, 48) and rgb.dtype == torch.float32
    valid = grid.valid(FRAMES / FPS)
    expected = np.floor(grid.times() * FPS + 1e-6).astype(int)
    np.testing.assert_array_equal(read_indices(rgb)[valid], expected[valid])
    assert float(rgb[:, ~torch.from_numpy(valid)].abs().sum()) == 0.0  # padding is zeros


def test_video_resizes_the_centre_square(root: Path) -> None:
    source = bound(VideoSource("videos/{video_id}.mp4", size=24), root)
    rgb = source.load(record(), TimeGrid(0.0, 1.6, 16))["m"]
    assert rgb.shape == (3, 16, 24, 24)
    np.testing.assert_array_equal(read_indices(rgb), np.arange(16))


def test_video_check_finds_truncated_and_missing_files(root: Path, tmp_path: Path) -> None:
    source = bound(VideoSource("videos/{video_id}.mp4"), root)
    assert source.check(record()) == []
    broken = tmp_path / "videos" / "idx.mp4"
    broken.parent.mkdir()
    data = (root / "videos" / "idx.mp4").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    moved = bound(VideoSource("videos/{video_id}.mp4"), tmp_path)
    [problem] = moved.check(record())
    assert problem.path == str(broken) and "cannot be read" in problem.what
    [problem] = moved.check(record(video_id="absent"))
    assert problem.path == str(tmp_path / "videos" / "absent.mp4")
    assert "not found" in problem.what and "missing: skip" in problem.fix


def test_video_length_must_match_the_duration_unless_resampled(root: Path) -> None:
    source = bound(VideoSource("videos/{video_id}.mp4"), root)
    [problem] = source.check(record(duration=20.0))
    assert "has 120 frames" in problem.what and "resample: true" in problem.fix
    assert source.check(record(duration=12.1)) == []  # one frame off is tolerated
    stretched = bound(VideoSource("videos/{video_id}.mp4", size=48, resample=True), root)
    assert stretched.check(record(duration=24.0)) == []
    rgb = stretched.load(record(duration=24.0), TimeGrid(0.0, 24.0, 12))["m"]
    np.testing.assert_array_equal(read_indices(rgb), np.arange(12) * 10 + 5)


def test_reader_cache_starts_empty_in_another_process() -> None:
    opened: list[str] = []
    cache = ReaderCache(lambda path: opened.append(path) or path, capacity=2)
    cache.get("a"), cache.get("a"), cache.get("b"), cache.get("c"), cache.get("a")
    assert opened == ["a", "b", "c", "a"]  # LRU of two: "a" was closed by "c"
    cache._pid = -1  # as in a forked DataLoader worker
    cache.get("c")
    assert opened[-1] == "c"


@pytest.fixture(scope="module")
def flow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flow of +3 px in x and -2 px in y everywhere, at frame t plus 0.1 * t in x."""
    folder = tmp_path_factory.mktemp("flow")
    flow = np.zeros((40, 32, 32, 2), dtype=np.float32)
    flow[..., 0] = 3.0 + 0.1 * np.arange(40)[:, None, None]
    flow[..., 1] = -2.0
    write_video(folder / "flow" / "v.mp4", quantize_flow(flow, 10.0), FPS, lossless_rgb=True)
    np.save(folder / "flow" / "v.npy", flow)
    return folder


@pytest.mark.parametrize("suffix", ["mp4", "npy"])
def test_flow_in_pixels_over_bound_from_video_and_array(flow_root: Path, suffix: str) -> None:
    source = FlowSource(f"flow/{{video_id}}.{suffix}", bound=10.0, size=32)
    bound(source, flow_root)
    flow = source.load(record(4.0, "v"), TimeGrid(1.0, 2.0, 10))["m"]
    assert flow.shape == (2, 10, 32, 32)
    expected_x = (3.0 + 0.1 * np.arange(10, 20)) / 10.0
    np.testing.assert_allclose(flow[0].mean((1, 2)).numpy(), expected_x, atol=0.01)
    np.testing.assert_allclose(flow[1].numpy(), -0.2, atol=0.01)


def test_flow_displacements_scale_with_the_frames(flow_root: Path) -> None:
    source = bound(FlowSource("flow/{video_id}.npy", bound=10.0, size=16), flow_root)
    flow = source.load(record(4.0, "v"), TimeGrid(0.0, 0.1, 1))["m"]
    np.testing.assert_allclose(flow[1].numpy(), -0.1, atol=1e-5)  # half the size, half the px


def test_keypoints_normalised_and_picked_per_frame(tmp_path: Path) -> None:
    points = np.zeros((50, 2, 3), dtype=np.float32)
    points[:, 0] = [[20.0 + t, 24.0, 1.0] for t in range(50)]  # frame 64 wide, 48 high
    np.save(tmp_path / "p.npy", points)
    source = KeypointSource("{video_id}.npy", image_size=(64, 48), joints=["left_hand", "head"])
    bound(source, tmp_path)
    out = source.load(record(5.0, "p"), TimeGrid(1.0, 1.5, 5))["m"]
    assert out.shape == (5, 2, 3)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), (np.arange(10, 15) + 20.0 - 8.0) / 48.0)
    np.testing.assert_allclose(out[:, 0, 1].numpy(), 0.5)
    np.testing.assert_array_equal(source.flip_order(), [0, 1])


def test_keypoints_of_the_wrong_shape_name_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.zeros((50, 3, 2), dtype=np.float32))
    source = bound(KeypointSource("{video_id}.npy", image_size=(64, 48)), tmp_path)
    [problem] = source.check(record(5.0, "p"))
    assert problem.path == str(tmp_path / "p.npy") and "(T, K, 3)" in problem.what


def test_flip_order_swaps_left_and_right_joints() -> None:
    source = KeypointSource(joints=["head", "left_hand", "right_hand", "left_foot", "right_foot"])
    np.testing.assert_array_equal(source.flip_order(), [0, 2, 1, 4, 3])


def test_boxes_padded_masked_and_best_first(tmp_path: Path) -> None:
    def box(x1: float, score: float, category: str = "ball") -> dict:
        return {"box2d": {"x1": x1, "y1": 0, "x2": x1 + 8, "y2": 8}, "category": category,
                "score": score}  # fmt: skip

    frames = [{"frame": 0, "labels": [box(8, 0.2), box(16, 0.9, "person"), box(24, 0.5)]},
              {"frame": 1, "labels": []}]  # fmt: skip
    data = {"fps": 10, "width": 64, "height": 32, "frames": frames}
    (tmp_path / "b.json").write_text(json.dumps(data))
    source = bound(BoxSource("{video_id}.json", ["person", "ball"], max_boxes=2), tmp_path)
    assert source.check(record(0.2, "b")) == []
    out = source.load(record(0.2, "b"), TimeGrid(0.0, 0.3, 3))
    boxes, mask = out["m"], out["m_mask"]
    assert boxes.shape == (3, 2, 6)
    assert mask.tolist() == [[True, True], [False, False], [False, False]]
    np.testing.assert_allclose(boxes[0, 0].numpy(), [0.0, 0.0, 0.25, 0.25, 0, 0.9])  # x - 16
    np.testing.assert_allclose(boxes[0, 1].numpy(), [0.25, 0.0, 0.5, 0.25, 1, 0.5])


def test_boxes_of_an_unknown_category_name_the_file(tmp_path: Path) -> None:
    frame = {"frame": 0, "labels": [{"box2d": {"x1": 0, "y1": 0, "x2": 1, "y2": 1},
                                     "category": "cat", "score": 1}]}  # fmt: skip
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"fps": 10, "width": 8, "height": 8, "frames": [frame]}))
    [problem] = bound(BoxSource("{video_id}.json", ["ball"]), tmp_path).check(record(0.1, "b"))
    assert problem.path == str(path) and "'cat'" in problem.what


@pytest.mark.parametrize(
    ("box2d", "score", "message"),
    [
        ({"x1": float("nan"), "y1": 0, "x2": 4, "y2": 4}, 0.9, "non-finite"),
        ({"x1": 0, "y1": 0, "x2": 4, "y2": 4}, float("inf"), "non-finite"),
        ({"x1": 6, "y1": 0, "x2": 2, "y2": 4}, 0.9, "inverted box"),
    ],
    ids=["nan-coordinate", "inf-score", "x2-before-x1"],
)
def test_bad_boxes_are_a_problem_naming_the_file_and_frame(
    tmp_path: Path, box2d: dict, score: float, message: str
) -> None:
    """Before, NaN boxes passed the check and crashed the fit with "scores contain NaN"."""
    frames = [{"frame": 0, "labels": []}, {"frame": 1, "labels": [
        {"box2d": box2d, "category": "ball", "score": score}]}]  # fmt: skip
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"fps": 10, "width": 8, "height": 8, "frames": frames}))
    [problem] = bound(BoxSource("{video_id}.json", ["ball"]), tmp_path).check(record(0.2, "b"))
    assert problem.path == str(path) and message in problem.what and "frame 1" in problem.what


@pytest.fixture
def features(tmp_path: Path) -> Path:
    """THUMOS-like features: stride 4, window 16 at 10 fps; value = feature index, 2 channels
    groups (first half = index, second half = -index)."""
    count = (FRAMES - 16) // 4 + 1
    index = np.arange(count, dtype=np.float32)[:, None]
    array = np.concatenate([np.repeat(index, 3, 1), -np.repeat(index, 3, 1)], 1)
    np.save(tmp_path / "idx.npy", array)
    return tmp_path


def test_features_follow_actionformer_rule_and_channel_slice(features: Path) -> None:
    source = FeatureSource("{video_id}.npy", stride=4, window=16, channels=(3, 6))
    bound(source, features)
    assert source.check(record()) == []
    grid = TimeGrid(0.0, 12.0, 30)  # 0.4 s = 4 frames per step, like the features
    out = source.load(record(), grid)["m"]
    assert out.shape == (3, 30)
    # feature i is centred at (4 i + 8) / 10 s; step j at (j + 0.5) * 0.4 s
    # (position j - 1.5: halfway between two features, the later one is taken)
    expected = np.clip(np.arange(30) - 1, 0, 26)
    np.testing.assert_array_equal(-out[0].numpy(), expected)


def test_features_with_nan_or_too_short_name_the_file(features: Path) -> None:
    source = bound(FeatureSource("{video_id}.npy", stride=4, window=16), features)
    [short] = source.check(record(duration=20.0))
    assert short.path == str(features / "idx.npy") and "features" in short.what
    array = np.load(features / "idx.npy")
    array[3, 1] = np.nan
    np.save(features / "idx.npy", array)
    [nan] = source.check(record())
    assert nan.path == str(features / "idx.npy") and "NaN" in nan.what
    with pytest.raises(DataError, match=r"idx\.npy"):
        source.load(record(), TimeGrid(0.0, 2.0, 5))


def test_a_feature_file_of_another_width_is_named_before_training(tmp_path: Path) -> None:
    """Each file alone is fine; together one of them would fail collate mid-epoch, naming no
    file. The datamodule's check compares widths across the videos it checks."""
    from datamodules.datamodule import MultimodalDataModule

    records = {
        f"v{i}": {"subset": "training", "duration": 4.0, "annotations": []} for i in range(3)
    }
    (tmp_path / "gt.json").write_text(json.dumps({"database": records}))
    for i in range(3):
        np.save(tmp_path / f"v{i}.npy", np.zeros((10, 8 if i != 1 else 6), np.float32))
    dm = MultimodalDataModule(
        tmp_path, {"rgb": FeatureSource("{video_id}.npy", resample=True, fps=10.0)},
        annotations="gt.json", annotation_format="activitynet", window_seconds=4.0,
        window_steps=40, val_subset=None, num_workers=0,
    )  # fmt: skip
    report = dm.inspect("train")
    [problem] = report.all_problems
    assert problem.path == str(tmp_path / "v1.npy") and "has 6 channels" in problem.what
    assert "have 8" in problem.what and [r.video_id for r in report.usable] == ["v0", "v2"]


def test_features_resampled_linearly_over_the_duration(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.arange(10, dtype=np.float32)[:, None])
    source = bound(FeatureSource("{video_id}.npy", resample=True), tmp_path)
    out = source.load(record(5.0, "f"), TimeGrid(0.0, 5.0, 20))["m"][0].numpy()
    # sample i centred at (i + 0.5) * 0.5 s; step j at (j + 0.5) * 0.25 s
    np.testing.assert_allclose(out, np.clip((np.arange(20) + 0.5) * 0.5 - 0.5, 0, 9))


def test_npy_files_open_from_many_threads_at_once(tmp_path: Path) -> None:
    """The data check opens feature files from a thread pool; numpy's header parser is not
    thread-safe on CPython 3.11, so opening must not fail or mix files up under contention."""
    from concurrent.futures import ThreadPoolExecutor

    from datamodules.sources.base import load_array

    paths = []
    for index in range(16):
        path = tmp_path / f"f{index}.npy"
        np.save(path, np.full((index + 1, 3), index, np.float32))
        paths.append(path)
    with ThreadPoolExecutor(8) as pool:
        arrays = list(pool.map(load_array, paths * 150))
    for array, path in zip(arrays, paths * 150, strict=True):
        index = int(path.stem[1:])
        assert array.shape == (index + 1, 3) and float(array[0, 0]) == index
