"""Test-time prediction files: windows put back on the video's grid, the step count of the grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.grid import TimeGrid
from lightning_modules.tasks import DenseTask, SegmentTask


def _batch(duration: float, t0: float, steps: int, stride: float) -> dict:
    valid = torch.from_numpy(TimeGrid(t0, t0 + steps * stride, steps).valid(duration))
    return {
        "mask": valid[None],
        "meta": {
            "video_id": ["v"],
            "window_index": torch.tensor([round(t0 / (steps * stride))]),
            "t0": torch.tensor([t0]),
            "stride": torch.tensor([stride]),
            "duration": torch.tensor([duration]),
        },
    }


@pytest.mark.parametrize("duration", [12.75, 12.25, 13.1])  # 25.5 steps rounds up to 26
def test_dense_windows_fill_the_video_grid_exactly(duration: float, tmp_path: Path) -> None:
    """Steps whose instant lies in the video, whatever the rounding of duration / stride."""
    stride, steps, classes = 0.5, 16, ["a", "b"]
    rows = []
    for t0 in (0.0, steps * stride):
        batch = _batch(duration, t0, steps, stride)
        scores = torch.arange(steps, dtype=torch.float32).repeat(1, 2, 1) + t0 / stride
        rows += DenseTask().window_rows(scores, batch)
    path = DenseTask().write_predictions(rows, classes, tmp_path)
    written = np.load(path)["v"]
    expected_steps = int(np.sum((np.arange(2 * steps) + 0.5) * stride < duration))
    assert written.shape == (expected_steps, 2)
    np.testing.assert_array_equal(written[:, 0], np.arange(expected_steps))


def test_segments_are_shifted_to_video_time(tmp_path: Path) -> None:
    batch = _batch(20.0, 12.8, 32, 0.4)
    predictions = [{"segments": torch.tensor([[1.0, 2.5]]), "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([1])}]  # fmt: skip
    task = SegmentTask()
    path = task.write_predictions(task.window_rows(predictions, batch), ["a", "b"], tmp_path)
    result = json.loads(path.read_text())["results"]["v"][0]
    assert result["label"] == "b" and result["segment"] == pytest.approx([13.8, 15.3])
