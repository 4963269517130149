"""Time grid, samplers and joint transforms: steps land where the grid says, every step is scored
once, and every modality moves with the crop and flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from datamodules.annotations import Segment, VideoRecord
from datamodules.grid import TimeGrid, expected_features, video_steps
from datamodules.sampling import (
    ClipWindows,
    Draw,
    EvalShardSampler,
    EvalWindows,
    TrainSampler,
    TrainWindows,
)
from datamodules.sources import VideoSource
from datamodules.transforms import (
    SpatialParams,
    colour_jitter,
    crop_boxes,
    crop_flow,
    crop_images,
    crop_keypoints,
)
from tests.data_helpers import read_indices, write_index_video

FPS = 10.0


def video(duration: float, video_id: str = "v", segments=()) -> VideoRecord:
    return VideoRecord(video_id, "training", duration, tuple(segments), fps=FPS)


def test_grid_instants_stride_and_validity() -> None:
    grid = TimeGrid(1.0, 2.0, 4)
    assert grid.stride == 0.25
    np.testing.assert_allclose(grid.times(), [1.125, 1.375, 1.625, 1.875])
    assert grid.valid(1.5).tolist() == [True, True, False, False]
    assert video_steps(12.3, 0.1) == 123 and video_steps(12.25, 0.1) == 122
    assert expected_features(12.0, 10.0, 4, 16) == 27
    with pytest.raises(ValueError):
        TimeGrid(1.0, 1.0, 4)


@pytest.mark.parametrize("duration", [0.35, 6.4, 6.45, 12.8, 13.0, 19.27])
def test_eval_tiles_cover_every_step_exactly_once(duration: float) -> None:
    windows = EvalWindows([video(duration)], seconds=6.4, steps=64)
    covered = []
    for index in range(len(windows)):
        [window] = windows.windows(index)
        valid = window.grid.valid(duration)
        covered += list(np.rint(window.grid.times()[valid] / 0.1 - 0.5).astype(int))
    assert sorted(covered) == list(range(video_steps(duration, 0.1)))


def test_eval_shards_over_two_ranks_cover_each_window_once() -> None:
    records = [video(d, f"v{i}") for i, d in enumerate([3.0, 7.7, 12.9, 20.0, 0.5])]
    windows = EvalWindows(records, seconds=2.0, steps=20)
    shards = [list(EvalShardSampler(range(len(windows)), 2, rank)) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(len(windows)))
    assert abs(len(shards[0]) - len(shards[1])) <= 1
    assert list(EvalShardSampler(range(5), 2, 1)) == [2, 3, 4]  # contiguous, not padded


def test_train_order_is_lightnings_distributed_order_as_draws_and_resumes_mid_epoch() -> None:
    """Per rank and epoch the indices of Lightning's `DistributedSampler` (same seed, padding);
    `start` skips the first samples of the next pass only, and the length stays whole."""
    for rank in (0, 1):
        sampler = TrainSampler(range(13), num_replicas=2, rank=rank, seed=5)
        reference = DistributedSampler(range(13), num_replicas=2, rank=rank, seed=5)
        for epoch in (0, 3):
            sampler.set_epoch(epoch)
            reference.set_epoch(epoch)
            expected = [Draw(index, 5, epoch) for index in reference]
            assert list(sampler) == expected and len(expected) == len(sampler) == 7
            sampler.start = 4
            assert list(sampler) == expected[4:]
            assert list(sampler) == expected
    orders = [[d.index for d in TrainSampler(range(13), seed=seed)] for seed in (0, 0, 1)]
    assert orders[0] == orders[1] != orders[2] and sorted(orders[0]) == list(range(13))


def test_train_windows_stay_inside_and_on_the_step_grid() -> None:
    records = [video(9.95, "a"), video(3.0, "b")]
    windows = TrainWindows(records, seconds=2.0, steps=20)
    assert len(windows) == 5 + 2  # as many per epoch as evaluation tiles
    rng = np.random.default_rng(0)
    for _ in range(200):
        [window] = windows.windows(int(rng.integers(len(windows))), rng)
        assert 0.0 <= window.grid.t0 <= window.record.duration - 2.0 + 1e-9
        assert abs(window.grid.t0 / 0.1 - round(window.grid.t0 / 0.1)) < 1e-6
    short = TrainWindows([video(1.0)], seconds=2.0, steps=20)
    assert short.windows(0, rng)[0].grid.t0 == 0.0  # a video shorter than a window starts at 0


def test_action_centred_windows_contain_the_action() -> None:
    record = video(60.0, segments=[Segment("jump", 40.0, 41.0)])
    windows = TrainWindows([record], seconds=4.0, steps=40, centre_on_action=1.0)
    rng = np.random.default_rng(1)
    for _ in range(50):
        grid = windows.windows(0, rng)[0].grid
        assert grid.t0 <= 41.0 and grid.t1 >= 40.0


def test_clip_windows_spread_frames_uniformly_with_views() -> None:
    record = VideoRecord("v", "training", 10.0, (Segment("jump", 2.0, 4.0),), fps=FPS)
    test = ClipWindows([record], frames=4, views=2)
    assert len(test) == 1  # one sample per clip, with its views
    first, second = (view.grid.times() for view in test.windows(0))
    np.testing.assert_allclose(first, [2.125, 2.625, 3.125, 3.625])
    np.testing.assert_allclose(second, [2.375, 2.875, 3.375, 3.875])
    train = ClipWindows([record], frames=4, views=2, train=True)
    assert len(train) == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        [view] = train.windows(0, rng)
        times = view.grid.times()
        assert times.min() >= 2.0 and times.max() < 4.0
        np.testing.assert_allclose(np.diff(times), 0.5)
    whole = VideoRecord("w", "training", 3.0, clip_label="spin")
    assert ClipWindows([whole], frames=3).windows(0)[0].clip == Segment("spin", 0.0, 3.0)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_every_sampler_returns_the_frames_its_grid_asks_for(tmp_path: Path, backend: str) -> None:
    write_index_video(tmp_path / "v.mp4", 200, FPS)
    record = video(20.0, segments=[Segment("jump", 3.3, 7.9), Segment("spin", 15.0, 19.0)])
    source = VideoSource("{video_id}.mp4", size=48, backend=backend)
    source.bind("rgb", tmp_path, None)
    rng = np.random.default_rng(3)
    samplers = [
        TrainWindows([record], seconds=3.2, steps=32, centre_on_action=0.5),
        TrainWindows([record], seconds=4.0, steps=20),  # two frames per step
        EvalWindows([record], seconds=6.4, steps=64),
        ClipWindows([record], frames=8, views=3),
        ClipWindows([record], frames=8, train=True),
    ]
    for sampler in samplers:
        for index in range(len(sampler)):
            for window in sampler.windows(index, rng):
                rgb = source.load(record, window.grid)["rgb"]
                valid = window.grid.valid(record.duration)
                expected = np.floor(window.grid.times() * FPS + 1e-6).astype(int)
                np.testing.assert_array_equal(read_indices(rgb)[valid], expected[valid])


def _marked_frame(x: int, y: int, size: int = 32) -> torch.Tensor:
    image = torch.zeros(3, 1, size, size)
    image[:, :, y, x] = 1.0
    return image


@pytest.mark.parametrize("flip", [False, True])
def test_crop_and_flip_move_pixels_keypoints_and_boxes_together(flip: bool) -> None:
    params = SpatialParams(x0=0.25, y0=0.125, side=0.5, flip=flip)
    x, y = 14, 10  # pixel centre at (14.5 / 32, 10.5 / 32) in normalised units
    image = crop_images(_marked_frame(x, y), params)[0, 0]
    bright_y, bright_x = np.unravel_index(int(image.argmax()), image.shape)
    points = torch.tensor([[[14.5 / 32, 10.5 / 32, 1.0], [0.01, 0.01, 1.0]]])
    moved = crop_keypoints(points, params, np.array([0, 1]))[0]
    assert abs(moved[0, 0] * 32 - (bright_x + 0.5)) < 1.0
    assert abs(moved[0, 1] * 32 - (bright_y + 0.5)) < 1.0
    assert moved[1, 2] == 0.0  # the corner joint left the view
    boxes = torch.tensor([[[0.3, 0.2, 0.5, 0.4, 1.0, 0.9], [0.0, 0.0, 0.1, 0.1, 2.0, 0.5]]])
    out, mask = crop_boxes(boxes, torch.tensor([[True, True]]), params)
    expected_x = [0.1, 0.5] if not flip else [0.5, 0.9]
    np.testing.assert_allclose(out[0, 0, [0, 2]].numpy(), expected_x, atol=1e-6)
    np.testing.assert_allclose(out[0, 0, [1, 3]].numpy(), [0.15, 0.55], atol=1e-6)
    assert mask.tolist() == [[True, False]] and out[0, 1].abs().sum() == 0


def test_flip_negates_flow_x_and_zoom_scales_it() -> None:
    flow = torch.zeros(2, 3, 16, 16)
    flow[0], flow[1] = 0.2, -0.1
    flipped = crop_flow(flow, SpatialParams(flip=True))
    np.testing.assert_allclose(flipped[0].numpy(), -0.2, atol=1e-6)
    np.testing.assert_allclose(flipped[1].numpy(), -0.1, atol=1e-6)
    zoomed = crop_flow(flow, SpatialParams(x0=0.25, y0=0.25, side=0.5))
    np.testing.assert_allclose(zoomed[0].numpy(), 0.4, atol=1e-6)


def test_flip_mirrors_left_and_right_joints() -> None:
    points = torch.tensor([[[0.2, 0.5, 1.0], [0.8, 0.5, 1.0]]])  # left hand, right hand
    out = crop_keypoints(points, SpatialParams(flip=True), np.array([1, 0]))
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0.2, 0.8], atol=1e-6)


def test_colour_jitter_changes_rgb_within_range() -> None:
    rgb = torch.rand(3, 2, 8, 8)
    params = SpatialParams(brightness=1.3, contrast=0.7, saturation=1.2)
    out = colour_jitter(rgb, params)
    assert out.shape == rgb.shape and not torch.equal(out, rgb)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.equal(colour_jitter(rgb, SpatialParams()), rgb)
