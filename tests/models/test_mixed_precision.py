"""Every model and task runs under bf16 autocast (Lightning's `bf16-mixed`), losses in fp32."""

from __future__ import annotations

import pytest
import torch
from model_inputs import NUM_JOINTS, padded_mask, random_inputs

from datamodules.synthetic.actions import BONES
from lightning_modules.models import (
    MSTCN,
    PDAN,
    ActionModel,
    BoxLayoutTransformer,
    ClipHead,
    ConvPyramid,
    FeatureProjection,
    KeypointGCN,
    SegmentHead,
    TransformerPyramid,
    VideoCNN,
    VideoTransformer,
)
from lightning_modules.tasks import ClipTask, DenseTask, SegmentTask

STEPS, VALID, K = 16, 12, 3
CASES = {
    "video_cnn+pdan": (
        lambda: VideoCNN(stem_channels=8, widths=(16,), depths=(1,)),
        lambda c: PDAN(c, K, 16),
        DenseTask,
    ),
    "video_transformer+mstcn": (
        lambda: VideoTransformer(image_size=32, dim=32, heads=2),
        lambda c: MSTCN(c, K, 2, 3, 16),
        DenseTask,
    ),
    "keypoints+actionformer": (
        lambda: KeypointGCN(NUM_JOINTS, BONES, channels=(16,)),
        lambda c: SegmentHead(TransformerPyramid(c, 16, levels=3, heads=2, window=5), K),
        SegmentTask,
    ),
    "features+conv_pyramid": (
        lambda: FeatureProjection(24, 16),
        lambda c: SegmentHead(ConvPyramid(c, 16, levels=3), K),
        SegmentTask,
    ),
    "boxes+clip": (
        lambda: BoxLayoutTransformer(dim=32, heads=2),
        lambda c: ClipHead(c, {"verb": K, "noun": 2}),
        ClipTask,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_autocast_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    make_encoder, make_head, task = CASES[name]
    encoder = make_encoder()
    model = ActionModel(encoder, make_head(encoder.out_channels))
    mask = padded_mask(2, STEPS, VALID)
    batch = {
        "targets": {
            "frames": torch.rand(2, STEPS, K) > 0.5,
            "segments": [torch.tensor([[0.2, 0.9, 1.0]]), torch.tensor([[0.1, 0.5, 0.0]])],
            "clip": {"verb": torch.tensor([0, 2]), "noun": torch.tensor([1, 0])},
        },
        "meta": {"stride": torch.tensor([0.1, 0.1])},
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(random_inputs(2, STEPS), mask)
        losses = task().loss(output, batch)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    task().predict(output, batch)
