"""PDAN dense detection head (Dai et al., "PDAN: Pyramid Dilated Attention Network", WACV 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.models.outputs import HEAD_TAP, ModelOutput


def _shift(x: Tensor, offset: int, fill: float | bool) -> Tensor:
    """`y[..., t] = x[..., t + offset]`, with `fill` where `t + offset` leaves the sequence."""
    if offset == 0:
        return x
    length = x.shape[-1]
    if abs(offset) >= length:
        return torch.full_like(x, fill)
    if offset > 0:
        return F.pad(x[..., offset:], (0, offset), value=fill)
    return F.pad(x[..., :offset], (-offset, 0), value=fill)


class DilatedAttention(nn.Module):
    """PDAN's dilated attention layer (DAL), as the authors' code computes it.

    Each channel of step t attends over its keys at t−d, t and t+d: the scores are the
    per-channel products of query and key, a softmax over the three positions, and the values
    are the keys plus a learned relative-position vector per channel and position. Query and
    key are 1x1 convolutions without bias, there is no separate value projection, and positions
    outside the sequence are zero inputs (keys 0, values the relative term), as the official
    zero padding makes them. The head masks its input, so a padded step is a zero input too:
    a valid step's output does not depend on how much padding follows it. Initialisation as
    the authors: Kaiming normal (fan out) for query and key, standard normal for the relative
    term.
    """

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.query = nn.Conv1d(channels, channels, 1, bias=False)
        self.key = nn.Conv1d(channels, channels, 1, bias=False)
        self.relative = nn.Parameter(torch.empty(3, channels, 1))
        nn.init.kaiming_normal_(self.query.weight, mode="fan_out")
        nn.init.kaiming_normal_(self.key.weight, mode="fan_out")
        nn.init.normal_(self.relative)

    def forward(self, x: Tensor) -> Tensor:
        query, key = self.query(x), self.key(x)
        # positions on a leading axis: a softmax over a last axis of size 3 is slow on CPU
        keys = torch.stack([_shift(key, o, 0.0) for o in (-self.dilation, 0, self.dilation)], 1)
        weights = (query[:, None] * keys).softmax(dim=1)
        return (weights * (keys + self.relative)).sum(dim=1)


class PDANBlock(nn.Module):
    """Residual block: ReLU(dilated attention), 1x1 convolution, dropout, added to the input."""

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.attention = DilatedAttention(channels, dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.dropout(self.mix(torch.relu(self.attention(x))))
        return (x + out) * mask[:, None].to(x.dtype)


class PDAN(nn.Module):
    """PDAN head: 1x1 conv to `hidden_channels`, dilated attention blocks (dilations 1, 2, 4,
    8, 16 by default), dropout, 1x1 conv to per-step class logits.

    The paper uses 512 hidden channels on 1024-d I3D features; the default here is smaller so
    it trains on a CPU. Taps: `block{i}`, each block's output `(B, hidden, T)`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_channels: int = 128,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.project = nn.Conv1d(in_channels, hidden_channels, 1)
        self.blocks = nn.ModuleList(PDANBlock(hidden_channels, d, dropout) for d in dilations)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Conv1d(hidden_channels, num_classes, 1)

    def forward(self, features: Tensor, mask: Tensor) -> ModelOutput:
        keep = mask[:, None].to(features.dtype)
        x = self.project(features) * keep
        taps = {}
        for index, block in enumerate(self.blocks):
            x = block(x, mask)
            taps[f"block{index}"] = x
        taps[HEAD_TAP] = x
        logits = self.classify(self.dropout(x)) * keep
        return ModelOutput(
            embeddings=features,
            logits=logits,
            mask=mask,
            taps=taps,
            extras={"stage_logits": logits[None]},
        )
