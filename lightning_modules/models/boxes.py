"""Object-box encoder: a layout transformer, as Radevski et al.'s object teacher (STLT-style)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange
from torch import Tensor, nn

from lightning_modules.models.encoder import ModalityEncoder
from lightning_modules.models.layers import (
    key_padding_mask,
    sinusoidal_positions,
    transformer_encoder,
)


class BoxLayoutTransformer(ModalityEncoder):
    """Per-frame sets of boxes to per-step features (Radevski et al. ICCV 2021 / 2023).

    Reads `inputs[modality]` `(B, T, N, 6)` = x1, y1, x2, y2 (0-1), category index, score and
    `inputs[f"{modality}_mask"]` `(B, T, N)`. Each box becomes a token (its coordinates and
    score through a linear layer, plus a category embedding); a spatial transformer runs over
    each frame's set with a CLS token, masked boxes excluded from the attention, so what a
    padded box holds never matters; a temporal transformer then runs over the frames' CLS
    tokens with padded steps excluded.
    """

    time_dim = 1

    def __init__(
        self,
        num_categories: int = 4,
        modality: str = "boxes",
        dim: int = 64,
        heads: int = 4,
        spatial_depth: int = 2,
        temporal_depth: int = 2,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(modality, dim)
        self.box_embed = nn.Linear(5, dim)
        self.category_embed = nn.Embedding(num_categories, dim)
        self.cls = nn.Parameter(torch.zeros(dim))
        self.spatial = transformer_encoder(dim, heads, spatial_depth, mlp_ratio, dropout)
        self.temporal = transformer_encoder(dim, heads, temporal_depth, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        boxes = inputs[self.modality]
        batch, steps = boxes.shape[:2]
        present = inputs[f"{self.modality}_mask"].bool() & mask[:, :, None]
        keep = present[..., None].to(boxes.dtype)
        geometry = torch.cat([boxes[..., :4], boxes[..., 5:6]], dim=-1) * keep
        category = torch.where(present, boxes[..., 4].long(), 0)
        tokens = self.box_embed(geometry) + self.category_embed(category)
        tokens = rearrange(tokens, "b t n d -> (b t) n d")
        cls = self.cls.expand(tokens.shape[0], 1, -1)
        padding = rearrange(~present, "b t n -> (b t) n")
        padding = torch.cat([padding.new_zeros(padding.shape[0], 1), padding], dim=1)
        frames = self.spatial(torch.cat([cls, tokens], dim=1), src_key_padding_mask=padding)
        sequence = rearrange(frames[:, 0], "(b t) d -> b t d", b=batch)
        sequence = sequence + sinusoidal_positions(steps, sequence.shape[-1], sequence.device)
        sequence = self.temporal(sequence, src_key_padding_mask=key_padding_mask(mask))
        return rearrange(self.norm(sequence), "b t d -> b d t")
