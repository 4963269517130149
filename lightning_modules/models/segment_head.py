"""Anchor-free segment detection head over any temporal pyramid (ActionFormer, Zhang et al.,
ECCV 2022): per pyramid point, class logits and distances to the segment's start and end."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.models.layers import ChannelNorm, MaskedConv1d
from lightning_modules.models.outputs import HEAD_TAP, ModelOutput


def pyramid_points(lengths: list[int], device: torch.device | None = None) -> Tensor:
    """`(P, 3)` = (grid position, stride, level) of every point of levels with these lengths,
    level-major; level `l` has stride `2**l` and its point `i` sits at grid position `i * 2**l`."""
    rows = []
    for level, length in enumerate(lengths):
        stride = 2**level
        position = torch.arange(length, device=device, dtype=torch.float32) * stride
        rows.append(
            torch.stack(
                [position, torch.full_like(position, stride), torch.full_like(position, level)],
                dim=-1,
            )
        )
    return torch.cat(rows)


class ConvTower(nn.Module):
    """Masked 3-tap convolutions with LayerNorm and ReLU, then a masked 3-tap output conv."""

    def __init__(self, channels: int, out_channels: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(channels, channels, 3, padding=1) for _ in range(layers)
        )
        self.norms = nn.ModuleList(ChannelNorm(channels) for _ in range(layers))
        self.out = MaskedConv1d(channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(norm(conv(x, mask)))
        return self.out(x, mask)


class SegmentHead(nn.Module):
    """Pyramid, then a classification tower and a regression tower shared by all levels.

    The grid is padded to a multiple of the coarsest stride before the pyramid (padded steps
    masked). The classification bias starts at the focal-loss prior (`prior_prob`), so the
    early loss is not swamped by easy negatives; regression is `ReLU(scale_l * out)` with one
    learned scale per level, in units of the level's stride, its bias starting at one stride:
    from a zero bias, a distance that starts negative on every positive point sits in ReLU's
    flat part for good (seen in the overfit test). Output layout: `outputs.py`.
    Taps: `level{l}`, the pyramid's features `(B, C, T_l)`.
    """

    def __init__(
        self,
        pyramid: nn.Module,
        num_classes: int,
        head_layers: int = 2,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        self.pyramid = pyramid
        self.in_channels = pyramid.in_channels
        channels = pyramid.out_channels
        self.classify = ConvTower(channels, num_classes, head_layers)
        self.regress = ConvTower(channels, 2, head_layers)
        self.scales = nn.Parameter(torch.ones(pyramid.levels))
        nn.init.constant_(self.classify.out.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(self.regress.out.bias, 1.0)

    def forward(self, features: Tensor, mask: Tensor) -> ModelOutput:
        pad = -features.shape[-1] % 2 ** (self.pyramid.levels - 1)
        levels = self.pyramid(F.pad(features, (0, pad)), F.pad(mask, (0, pad), value=False))
        logits, offsets, taps = [], [], {}
        for level, (x, level_mask) in enumerate(levels):
            logits.append(self.classify(x, level_mask))
            offsets.append(F.relu(self.scales[level] * self.regress(x, level_mask)))
            taps[f"level{level}"] = x
        taps[HEAD_TAP] = taps["level0"]
        return ModelOutput(
            embeddings=features,
            logits=torch.cat(logits, dim=-1),
            mask=mask,
            taps=taps,
            extras={
                "offsets": torch.cat(offsets, dim=-1),
                "points": pyramid_points([x.shape[-1] for x, _ in levels], features.device),
                "point_mask": torch.cat([level_mask for _, level_mask in levels], dim=-1),
            },
        )
