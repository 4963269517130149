"""Small DecomposedStudents (dense: PDAN heads; segments: SegmentHead + ConvPyramid) and
their inputs, for the model and objective tests."""

from __future__ import annotations

import torch
from distill_outputs import padded_mask

from lightning_modules.models import (
    PDAN,
    ConvPyramid,
    DecomposedStudent,
    FeatureProjection,
    SegmentHead,
)

K, BRANCH, FUSED = 3, 12, 24


def dense_student(**options) -> DecomposedStudent:
    joint_width = BRANCH if options.get("fusion") == "sum" else FUSED
    return DecomposedStudent(
        FeatureProjection(16, 20),
        PDAN(BRANCH, K, hidden_channels=8, dilations=(1, 2), dropout=0.0),
        PDAN(joint_width, K, hidden_channels=8, dilations=(1, 2), dropout=0.0),
        **options,
    )


def segment_student(**options) -> DecomposedStudent:
    return DecomposedStudent(
        FeatureProjection(16, 20),
        SegmentHead(ConvPyramid(BRANCH, 8, levels=3), K),
        SegmentHead(ConvPyramid(FUSED, 8, levels=3), K),
        **options,
    )


def inputs(batch: int = 2, steps: int = 14, valid: int = 9) -> tuple[dict, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mask = padded_mask(batch, steps, valid)
    return {"features": torch.randn(batch, 16, steps, generator=generator)}, mask
