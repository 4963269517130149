"""Small random batches in the datamodule's layout, for the model and task tests."""

from __future__ import annotations

import torch

from datamodules.synthetic.actions import JOINTS

NUM_JOINTS = len(JOINTS)


def random_inputs(batch: int = 2, steps: int = 16, size: int = 32, boxes: int = 4) -> dict:
    """Every modality at once; boxes have random categories and a random box mask."""
    generator = torch.Generator().manual_seed(0)
    box = torch.rand(batch, steps, boxes, 6, generator=generator)
    box[..., 4] = torch.randint(0, 4, (batch, steps, boxes), generator=generator).float()
    return {
        "rgb": torch.randn(batch, 3, steps, size, size, generator=generator),
        "flow": torch.randn(batch, 2, steps, size, size, generator=generator),
        "pose": torch.rand(batch, steps, NUM_JOINTS, 3, generator=generator) * 32,
        "boxes": box,
        "boxes_mask": torch.rand(batch, steps, boxes, generator=generator) > 0.3,
        "features": torch.randn(batch, 24, steps, generator=generator),
    }


def padded_mask(batch: int, steps: int, valid: int) -> torch.Tensor:
    """All steps valid in sample 0; sample 1 onward valid for the first `valid` steps only."""
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[1:, valid:] = False
    return mask
