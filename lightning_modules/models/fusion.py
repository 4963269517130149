"""Early fusion: several modality encoders side by side, their features concatenated.

The multi-stream reference rows of the paper tables (ActionFormer RGB+flow in Lee et al., the
model trained on all modalities jointly in Radevski et al.) are one head over the concatenation
of per-modality features; that needs both modalities at inference, which is what the distilled
RGB students avoid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class EarlyFusion(nn.Module):
    """`(B, sum C_i, T)`: every encoder's features on the shared grid, concatenated.

    Args:
        encoders: modality encoders (each reads its own `inputs[modality]`).
    """

    def __init__(self, encoders: list[nn.Module]) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError("early fusion needs at least two encoders")
        self.encoders = nn.ModuleList(encoders)
        self.out_channels = sum(encoder.out_channels for encoder in encoders)
        self.modalities = [encoder.modality for encoder in encoders]
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"each encoder must read a different modality: {self.modalities}")
        self.modality = "+".join(self.modalities)

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        return torch.cat([encoder(inputs, mask) for encoder in self.encoders], dim=1)
