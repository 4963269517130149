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

    Queries go in blocks of `block` steps; each block attends to its keys and `window // 2`
    steps either side through one banded mask, so the work is a few dense matrix products per
    block (memory grows with `T * (block + window)`, not `T**2`: long THUMOS14 sequences). This
    is ActionFormer's windowed attention computed the way its sliding chunks are, and 5-7x
    faster on CPU than gathering a window of keys per step. Padded steps and steps beyond the
    ends are left out; a padded query still sees itself (no all-masked row).
    """

    def __init__(self, dim: int, heads: int, window: int, block: int = 32) -> None:
        super().__init__()
        if window % 2 == 0 or dim % heads:
            raise ValueError(f"window {window} must be odd and dim {dim} divisible by {heads}")
        self.heads, self.window, self.block = heads, window, block
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """`x (B, T, C)`, `mask (B, T)`."""
        steps, radius, block = x.shape[1], self.window // 2, self.block
        blocks = math.ceil(steps / block)
        extra = blocks * block - steps
        span = block + 2 * radius  # the keys one block of queries can reach
        q, k, v = (
            part.unflatten(-1, (self.heads, -1)).transpose(1, 2)
            for part in self.qkv(x).chunk(3, dim=-1)
        )  # (B, H, T, d)
        q = F.pad(q, (0, 0, 0, extra)).unflatten(2, (blocks, block))  # (B, H, n, block, d)
        k, v = (
            F.pad(t, (0, 0, radius, radius + extra)).unfold(2, span, block).transpose(-1, -2)
            for t in (k, v)
        )  # (B, H, n, span, d)
        key_valid = F.pad(mask, (radius, radius + extra)).unfold(1, span, block)  # (B, n, span)
        offset = torch.arange(span, device=x.device) - torch.arange(block, device=x.device)[:, None]
        in_window = (offset >= 0) & (offset <= 2 * radius)  # (block, span)
        allowed = (in_window & key_valid[:, :, None]) | (offset == radius)  # (B, n, block, span)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        return self.out(out.flatten(2, 3)[:, :, :steps].transpose(1, 2).flatten(2))


class AffineDropPath(nn.Module):
    """ActionFormer's residual-branch scaling: a per-channel scale starting at 1e-4 (LayerScale,
    Touvron et al. 2021), then stochastic depth (the whole branch of a sample dropped with
    probability `p` in training, the kept ones scaled by `1 / (1 - p)`)."""

    def __init__(self, dim: int, p: float, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init_scale))
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """`x (B, T, C)`."""
        x = x * self.scale
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, dtype=x.dtype, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class LocalTransformerBlock(nn.Module):
    """Pre-norm transformer block with local self-attention, on `(B, C, T)` features.

    As ActionFormer's: no dropout inside attention or MLP; with `drop_path > 0` both residual
    branches go through `AffineDropPath` (its default 0.1), with 0 they are added as they are.
    Padded steps are left out of the attention; their own outputs are not zeroed (the next
    downsampling ignores them and the pyramid masks its outputs)."""

    def __init__(
        self, dim: int, heads: int, window: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = LocalSelfAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.path_attention, self.path_mlp = (
            (AffineDropPath(dim, drop_path), AffineDropPath(dim, drop_path))
            if drop_path > 0
            else (nn.Identity(), nn.Identity())
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = x.transpose(1, 2)
        h = h + self.path_attention(self.attention(self.norm1(h), mask))
        h = h + self.path_mlp(self.mlp(self.norm2(h)))
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
        drop_path: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.levels = in_channels, channels, levels
        self.embed = ConvEmbedding(in_channels, channels, embed_layers)
        self.stem = nn.ModuleList(
            LocalTransformerBlock(channels, heads, window, mlp_ratio, drop_path)
            for _ in range(stem_blocks)
        )
        self.branch = nn.ModuleList(
            LocalTransformerBlock(channels, heads, window, mlp_ratio, drop_path)
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
