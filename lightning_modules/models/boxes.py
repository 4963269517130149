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
    `inputs[f"{modality}_mask"]` `(B, T, N)`. Each box becomes a token: its centre and size,
    mapped to -1...1 and multiplied by a learnable scale, through a small MLP, plus a category
    and a score embedding, the sum layer-normed (a plain linear layer on 0-1 coordinates left
    box position a tiny part of each token next to the category embedding, and the teacher
    stayed at chance). A spatial transformer runs over each frame's set with a CLS token,
    masked boxes excluded from the attention, so what a padded box holds never matters; each
    frame's CLS summary is layer-normed (so it is not swamped by the position codes) and a
    temporal transformer runs over them with padded steps excluded.

    No per-box change from the previous frame: box slots are not tracks, so slot `n` at `t` and
    at `t - 1` need not be the same object; motion is left to the temporal transformer.
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
        coord_scale: float = 3.0,
    ) -> None:
        super().__init__(modality, dim)
        # learnable, so training can set how sharply the MLP resolves position
        self.coord_scale = nn.Parameter(torch.tensor(float(coord_scale)))
        self.coord_embed = nn.Sequential(nn.Linear(4, dim), nn.GELU(), nn.Linear(dim, dim))
        self.score_embed = nn.Linear(1, dim)
        self.category_embed = nn.Embedding(num_categories, dim)
        # N(0, 1) rows would outweigh the coordinate MLP's output several times over at init
        nn.init.normal_(self.category_embed.weight, std=0.3)
        self.token_norm = nn.LayerNorm(dim)
        # a zero CLS token in a pre-norm transformer normalises to nothing but the LN bias
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        self.spatial = transformer_encoder(dim, heads, spatial_depth, mlp_ratio, dropout)
        self.frame_norm = nn.LayerNorm(dim)
        self.temporal = transformer_encoder(dim, heads, temporal_depth, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)

    def embed_boxes(self, boxes: Tensor, present: Tensor) -> Tensor:
        """`(..., N, dim)` tokens from `(..., N, 6)` boxes; absent boxes get neutral inputs."""
        keep = present[..., None].to(boxes.dtype)
        corners = boxes[..., :4] * keep
        centre = (corners[..., :2] + corners[..., 2:]) / 2
        size = corners[..., 2:] - corners[..., :2]
        layout = torch.cat([centre, size], dim=-1) * 2 - 1  # 0...1 -> -1...1
        category = torch.where(present, boxes[..., 4].long(), 0)
        tokens = (
            self.coord_embed(layout * self.coord_scale)
            + self.score_embed(boxes[..., 5:6] * keep)
            + self.category_embed(category)
        )
        return self.token_norm(tokens)

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        boxes = inputs[self.modality]
        batch, steps = boxes.shape[:2]
        present = inputs[f"{self.modality}_mask"].bool() & mask[:, :, None]
        tokens = rearrange(self.embed_boxes(boxes, present), "b t n d -> (b t) n d")
        cls = self.cls.expand(tokens.shape[0], 1, -1)
        padding = rearrange(~present, "b t n -> (b t) n")
        padding = torch.cat([padding.new_zeros(padding.shape[0], 1), padding], dim=1)
        frames = self.spatial(torch.cat([cls, tokens], dim=1), src_key_padding_mask=padding)
        sequence = self.frame_norm(rearrange(frames[:, 0], "(b t) d -> b t d", b=batch))
        sequence = sequence + sinusoidal_positions(steps, sequence.shape[-1], sequence.device)
        sequence = self.temporal(sequence, src_key_padding_mask=key_padding_mask(mask))
        return rearrange(self.norm(sequence), "b t d -> b d t")
