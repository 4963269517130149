"""Temporal feature pyramids for the segment detector: ActionFormer's and a plain conv one.

A pyramid maps `(B, C_in, T)` features and their mask, with `T` a multiple of
`2 ** (levels - 1)`, to `levels` pairs `(features (B, C, T / 2**l), mask (B, T / 2**l))`.
It exposes `in_channels`, `out_channels` and `levels`; `SegmentHead` needs nothing else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.models.layers import ChannelNorm, MaskedConv1d

Level = tuple[Tensor, Tensor]


def downsample(x: Tensor, mask: Tensor) -> Level:
    """Halve time by a 3-tap max-pool that ignores padded steps; step `i` keeps step `2i`'s mask."""
    pooled = F.max_pool1d(x.masked_fill(~mask[:, None], float("-inf")), 3, stride=2, padding=1)
    coarse = mask[:, ::2]
    return pooled.masked_fill(~coarse[:, None], 0.0), coarse


class ConvEmbedding(nn.Module):
    """Masked 3-tap convolutions, each followed by LayerNorm over channels and ReLU."""

    def __init__(self, in_channels: int, channels: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(in_channels if i == 0 else channels, channels, 3, padding=1)
            for i in range(layers)
        )
        self.norms = nn.ModuleList(ChannelNorm(channels) for _ in range(layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask[:, None].to(x.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(norm(conv(x, mask))) * keep
        return x


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention of each step over the `window` steps centred on it.

    Keys and values are unfolded into windows, so memory grows with `T * window`, not `T**2`
    (long THUMOS14 sequences). Padded steps and steps beyond the ends are left out.
    """

    def __init__(self, dim: int, heads: int, window: int, dropout: float) -> None:
        super().__init__()
        if window % 2 == 0 or dim % heads:
            raise ValueError(f"window {window} must be odd and dim {dim} divisible by {heads}")
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """`x (B, T, C)`, `mask (B, T)`."""
        radius = self.window // 2
        q, k, v = (
            part.unflatten(-1, (self.heads, -1)).transpose(1, 2)
            for part in self.qkv(x).chunk(3, dim=-1)
        )  # (B, H, T, d)
        k = F.pad(k, (0, 0, radius, radius)).unfold(2, self.window, 1)  # (B, H, T, d, w)
        v = F.pad(v, (0, 0, radius, radius)).unfold(2, self.window, 1)
        seen = F.pad(mask.float(), (radius, radius)).unfold(1, self.window, 1) > 0.5
        seen[..., radius] = True  # a padded query still sees itself: no all-masked rows
        scores = torch.einsum("bhtd,bhtdw->bhtw", q, k) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~seen[:, None], float("-inf"))
        attention = self.dropout(scores.softmax(dim=-1))
        out = torch.einsum("bhtw,bhtdw->bhtd", attention, v)
        return self.out(out.transpose(1, 2).flatten(2))


class LocalTransformerBlock(nn.Module):
    """Pre-norm transformer block with local self-attention, on `(B, C, T)` features.

    Padded steps are left out of the attention; their own outputs are not zeroed (the next
    downsampling ignores them and the pyramid masks its outputs)."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = LocalSelfAttention(dim, heads, window, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = x.transpose(1, 2)
        h = h + self.attention(self.norm1(h), mask)
        h = h + self.mlp(self.norm2(h))
        return h.transpose(1, 2)


class TransformerPyramid(nn.Module):
    """ActionFormer's backbone and neck (Zhang et al., ECCV 2022).

    Masked conv embedding, `stem_blocks` local-attention transformer blocks at full
    resolution, then one downsampling step (masked max-pool by 2) and one block per further
    level; every level is LayerNorm-ed (ActionFormer's identity FPN). ActionFormer downsamples
    inside its attention with strided depthwise convolutions; a max-pool before the block
    keeps this simpler with the same pyramid.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 128,
        levels: int = 6,
        embed_layers: int = 2,
        stem_blocks: int = 2,
        heads: int = 4,
        window: int = 19,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.levels = in_channels, channels, levels
        self.embed = ConvEmbedding(in_channels, channels, embed_layers)
        self.stem = nn.ModuleList(
            LocalTransformerBlock(channels, heads, window, mlp_ratio, dropout)
            for _ in range(stem_blocks)
        )
        self.branch = nn.ModuleList(
            LocalTransformerBlock(channels, heads, window, mlp_ratio, dropout)
            for _ in range(levels - 1)
        )
        self.norms = nn.ModuleList(ChannelNorm(channels) for _ in range(levels))

    def forward(self, x: Tensor, mask: Tensor) -> list[Level]:
        x = self.embed(x, mask)
        for block in self.stem:
            x = block(x, mask)
        outputs = [(x, mask)]
        for block in self.branch:
            x, mask = downsample(x, mask)
            x = block(x, mask)
            outputs.append((x, mask))
        return [
            (norm(x) * m[:, None].to(x.dtype), m)
            for norm, (x, m) in zip(self.norms, outputs, strict=True)
        ]


class ConvPyramid(nn.Module):
    """A plain convolutional pyramid without attention: the smaller detector's neck.

    Masked conv embedding, then per level a masked max-pool by 2 and a masked 3-tap
    convolution with LayerNorm and ReLU. It shows that the segment detector does not depend on
    the transformer (Lee et al. claim their gains are head-agnostic).
    """

    def __init__(
        self, in_channels: int, channels: int = 128, levels: int = 6, embed_layers: int = 2
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.levels = in_channels, channels, levels
        self.embed = ConvEmbedding(in_channels, channels, embed_layers)
        self.branch = nn.ModuleList(ConvEmbedding(channels, channels, 1) for _ in range(levels - 1))

    def forward(self, x: Tensor, mask: Tensor) -> list[Level]:
        x = self.embed(x, mask)
        outputs = [(x, mask)]
        for block in self.branch:
            x, mask = downsample(x, mask)
            x = block(x, mask)
            outputs.append((x, mask))
        return outputs
