"""Video encoders for RGB or optical-flow frames `(B, C, T, H, W)`: a 3D CNN and a transformer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from lightning_modules.models.encoder import ModalityEncoder, load_pretrained
from lightning_modules.models.layers import (
    key_padding_mask,
    sinusoidal_positions,
    transformer_encoder,
)


class TemporalConv(nn.Conv2d):
    """A `k x 1 x 1` convolution over time of `(B, C, T, H, W)`, run as a 2-D convolution on
    the `(B, C, T, H*W)` view: PyTorch sends `(k, 1, 1)` Conv3d kernels to its slow reference
    path on CPU, 2-3x slower than this (measured)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(cin, cout, (kernel, 1), padding=(kernel // 2, 0), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(3)).unflatten(3, x.shape[3:])


def _spatial_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(cout),
    )


def _temporal_bn(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(TemporalConv(cin, cout, kernel), nn.BatchNorm3d(cout))


class Block2Plus1D(nn.Module):
    """Residual block of one factorised (2+1)D convolution: spatial 1x3x3, then temporal kx1x1.

    Factorising space and time (Tran et al., R(2+1)D, CVPR 2018) costs far less than a full
    3x3x3 kernel on a CPU and adds a non-linearity between the two.
    """

    def __init__(self, cin: int, cout: int, spatial_stride: int, temporal_kernel: int) -> None:
        super().__init__()
        self.spatial = _spatial_bn(cin, cout, spatial_stride)
        self.temporal = _temporal_bn(cout, cout, temporal_kernel)
        self.shortcut = (
            nn.Identity()
            if cin == cout and spatial_stride == 1
            else nn.Sequential(
                nn.Conv3d(cin, cout, 1, (1, spatial_stride, spatial_stride), bias=False),
                nn.BatchNorm3d(cout),
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.temporal(torch.relu(self.spatial(x)))
        return torch.relu(y + self.shortcut(x))


class VideoCNN(ModalityEncoder):
    """A small residual (2+1)D CNN, X3D/I3D-style: spatial stem, temporal stem, strided stages.

    Time keeps its full resolution (dense and segment tasks need per-step features); space is
    halved by the stem and by the first block of every stage, then averaged away. Padded frames
    are zeroed on input, so what they held never reaches a valid output. The temporal stem is
    what lets an RGB model see motion at all on the synthetic benchmark (see
    ../shared/SYNTHETIC-NOTES.md). `frame_differences` also feeds `x_t - x_{t-1}` to the stem
    (TSN's RGB-difference input, Wang et al. ECCV 2016): motion from the first layer, still
    computed from RGB alone.
    """

    time_dim = 2

    def __init__(
        self,
        modality: str = "rgb",
        in_channels: int = 3,
        stem_channels: int = 16,
        widths: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (1, 1, 1),
        temporal_kernel: int = 3,
        stem_temporal_kernel: int = 5,
        frame_differences: bool = False,
        pretrained: str | None = None,
    ) -> None:
        if len(widths) != len(depths):
            raise ValueError(f"widths {list(widths)} and depths {list(depths)} differ in length")
        super().__init__(modality, widths[-1])
        self.frame_differences = frame_differences
        stem_inputs = 2 * in_channels if frame_differences else in_channels
        self.stem = nn.Sequential(
            _spatial_bn(stem_inputs, stem_channels, 2),
            nn.ReLU(inplace=True),
            _temporal_bn(stem_channels, stem_channels, stem_temporal_kernel),
            nn.ReLU(inplace=True),
        )
        blocks, cin = [], stem_channels
        for width, depth in zip(widths, depths, strict=True):
            for index in range(depth):
                blocks.append(Block2Plus1D(cin, width, 2 if index == 0 else 1, temporal_kernel))
                cin = width
        self.blocks = nn.ModuleList(blocks)
        if pretrained:
            load_pretrained(self, pretrained)

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        frames = inputs[self.modality]
        frames = frames * mask[:, None, :, None, None].to(frames.dtype)
        if self.frame_differences:
            previous = torch.cat([frames[:, :, :1], frames[:, :, :-1]], dim=2)
            frames = torch.cat([frames, frames - previous], dim=1)
        x = self.stem(frames)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(3, 4))


class VideoTransformer(ModalityEncoder):
    """Factorised space-time transformer (ViViT's factorised encoder, Arnab et al. ICCV 2021).

    Tubelets are embedded, a spatial transformer runs over each time step's patches with a CLS
    token, and a temporal transformer runs over the CLS tokens with padded steps masked out of
    the attention. Spatial positions are learned for `image_size`; temporal positions are
    sinusoidal, so any window length works.
    """

    time_dim = 2

    def __init__(
        self,
        modality: str = "rgb",
        in_channels: int = 3,
        image_size: int = 64,
        patch_size: int = 8,
        tubelet: int = 1,
        dim: int = 96,
        heads: int = 4,
        spatial_depth: int = 2,
        temporal_depth: int = 2,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pretrained: str | None = None,
    ) -> None:
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch_size}")
        super().__init__(modality, dim)
        self.tubelet = tubelet
        self.embed = nn.Conv3d(
            in_channels, dim, (tubelet, patch_size, patch_size), (tubelet, patch_size, patch_size)
        )
        self.spatial_positions = nn.Parameter(
            torch.randn((image_size // patch_size) ** 2, dim) * 0.02
        )
        self.cls = nn.Parameter(torch.zeros(dim))
        self.spatial = transformer_encoder(dim, heads, spatial_depth, mlp_ratio, dropout)
        self.temporal = transformer_encoder(dim, heads, temporal_depth, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)
        if pretrained:
            load_pretrained(self, pretrained)

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        x = inputs[self.modality] * mask[:, None, :, None, None].to(inputs[self.modality].dtype)
        frames = x.shape[2]
        pad = -frames % self.tubelet
        if pad:
            x = nn.functional.pad(x, (0, 0, 0, 0, 0, pad))
            mask = nn.functional.pad(mask, (0, pad))
        tokens = self.embed(x)
        batch, steps = tokens.shape[0], tokens.shape[2]
        if tokens.shape[3] * tokens.shape[4] != self.spatial_positions.shape[0]:
            raise ValueError(f"frames of {tuple(x.shape[3:])} do not match image_size")
        tokens = rearrange(tokens, "b d t h w -> (b t) (h w) d") + self.spatial_positions
        cls = self.cls.expand(tokens.shape[0], 1, -1)
        frame_tokens = self.spatial(torch.cat([cls, tokens], dim=1))[:, 0]
        sequence = rearrange(frame_tokens, "(b t) d -> b t d", b=batch)
        sequence = sequence + sinusoidal_positions(steps, sequence.shape[-1], sequence.device)
        step_mask = mask[:, :: self.tubelet]
        sequence = self.norm(
            self.temporal(sequence, src_key_padding_mask=key_padding_mask(step_mask))
        )
        out = rearrange(sequence, "b t d -> b d t").repeat_interleave(self.tubelet, dim=-1)
        return out[..., :frames]
