"""Small building blocks shared by the encoders and heads: masking, the time grid, norms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a `(B, C, ...)` tensor, independently at every position.

    Per-position statistics keep padded steps from leaking into valid ones, which BatchNorm in
    training mode and GroupNorm over time would not.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class MaskedConv1d(nn.Conv1d):
    """A 1-D convolution that zeroes padded steps before and after, as ActionFormer does.

    With padded steps zeroed on input, a valid step's output is what it would be on the
    unpadded sequence (zero padding at its end), whatever the padded steps held.
    """

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        keep = mask.unsqueeze(1).to(x.dtype)
        return super().forward(x * keep) * keep


def resample_time(x: Tensor, length: int) -> Tensor:
    """`(B, C, T')` features at `length` steps: averaged when shrinking, linear when growing."""
    if x.shape[-1] == length:
        return x
    if x.shape[-1] > length:
        return F.adaptive_avg_pool1d(x, length)
    return F.interpolate(x, size=length, mode="linear", align_corners=False)


def resample_mask(mask: Tensor, length: int) -> Tensor:
    """Bring a `(B, T)` step mask to `length` frames by nearest neighbour."""
    if mask.shape[-1] == length:
        return mask
    resized = F.interpolate(mask[:, None].float(), size=length, mode="nearest")
    return resized[:, 0] > 0.5


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `(B, C, T)` over valid steps, `(B, C)`; zero for a sample with no valid step."""
    weight = mask.unsqueeze(1).to(x.dtype)
    return (x * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


def key_padding_mask(valid: Tensor) -> Tensor:
    """`key_padding_mask` for `nn.MultiheadAttention` (True = ignore) from a validity mask.

    A row with no valid key would make softmax produce NaN, so such rows attend to everything;
    their outputs belong to padded queries and are masked afterwards anyway.
    """
    empty = ~valid.any(-1, keepdim=True)
    return ~(valid | empty)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """`(length, dim)` sine/cosine position codes (Vaswani et al. 2017), for any sequence length."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


def transformer_encoder(
    dim: int, heads: int, depth: int, mlp_ratio: float, dropout: float
) -> nn.TransformerEncoder:
    """A pre-norm GELU transformer over `(B, L, dim)` sequences (torch's own layers)."""
    layer = nn.TransformerEncoderLayer(
        dim,
        heads,
        int(dim * mlp_ratio),
        dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
