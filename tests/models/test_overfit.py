"""Each task learns: a few optimiser steps on one batch make its loss drop substantially."""

from __future__ import annotations

import pytest
import torch
from model_inputs import padded_mask

from lightning_modules.models import (
    MSTCN,
    PDAN,
    ActionModel,
    ClipHead,
    ConvPyramid,
    FeatureProjection,
    SegmentHead,
    TransformerPyramid,
    VideoCNN,
)
from lightning_modules.tasks import ClipTask, DenseTask, SegmentTask


def _fit(
    model: torch.nn.Module, task, inputs: dict, mask: torch.Tensor, batch: dict, steps: int
) -> list[float]:
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = task.loss(model(inputs, mask), batch)["loss"]
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


DENSE_HEADS = {
    "pdan": lambda: PDAN(32, 4, hidden_channels=32, dropout=0.0),
    "mstcn": lambda: MSTCN(32, 4, stages=2, layers=4, channels=32, dropout=0.0),
}
PYRAMIDS = {
    "actionformer": lambda: TransformerPyramid(32, 32, levels=3, heads=2, window=5, drop_path=0.0),
    "conv_pyramid": lambda: ConvPyramid(32, 32, levels=3),
}


@pytest.mark.parametrize("name", list(DENSE_HEADS))
def test_dense_task_overfits_one_batch(name: str) -> None:
    torch.manual_seed(0)
    head = DENSE_HEADS[name]()
    features = torch.randn(4, 16, 32)
    mask = padded_mask(4, 32, 24)
    batch = {"targets": {"frames": (features[:, :4] > 0.3).transpose(1, 2)}, "mask": mask}
    model = ActionModel(FeatureProjection(16, 32), head)
    losses = _fit(model, DenseTask(), {"features": features}, mask, batch, steps=40)
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("name", list(PYRAMIDS))
def test_segment_task_overfits_one_batch(name: str) -> None:
    torch.manual_seed(0)
    pyramid = PYRAMIDS[name]()
    features = torch.randn(2, 16, 32)
    mask = padded_mask(2, 32, 28)
    segments = [torch.tensor([[0.5, 1.3, 0.0], [2.0, 2.8, 2.0]]), torch.tensor([[0.2, 2.2, 1.0]])]
    batch = {
        "targets": {"segments": segments},
        "meta": {"stride": torch.tensor([0.1, 0.1])},
        "mask": mask,
    }
    model = ActionModel(FeatureProjection(16, 32), SegmentHead(pyramid, 3))
    task = SegmentTask()
    losses = _fit(model, task, {"features": features}, mask, batch, steps=60)
    assert losses[-1] < 0.3 * losses[0]
    # and the best detection of every ground-truth class lands on its segment
    with torch.no_grad():
        predictions = task.predict(model.eval()({"features": features}, mask), batch)
    for prediction, truth in zip(predictions, segments, strict=True):
        for start, end, label in truth.tolist():
            best = prediction["scores"].masked_fill(prediction["labels"] != label, -1).argmax()
            found = prediction["segments"][best]
            overlap = min(end, found[1]) - max(start, found[0])
            assert overlap / (max(end, found[1]) - min(start, found[0])) > 0.8


def test_clip_task_overfits_one_batch_with_two_heads() -> None:
    torch.manual_seed(0)
    clips = torch.randn(4, 3, 8, 16, 16)
    mask = torch.ones(4, 8, dtype=torch.bool)
    batch = {
        "targets": {
            "clip": {"verb": torch.tensor([0, 1, 2, 0]), "noun": torch.tensor([3, 2, 1, 0])}
        }
    }
    encoder = VideoCNN(stem_channels=8, widths=(16, 32), depths=(1, 1))
    model = ActionModel(encoder, ClipHead(32, {"verb": 3, "noun": 4}))
    losses = _fit(model, ClipTask(), {"rgb": clips}, mask, batch, steps=30)
    assert losses[-1] < 0.3 * losses[0]
