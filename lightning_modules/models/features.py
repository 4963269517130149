"""Encoder for pre-extracted snippet features `(B, D, T)` (I3D-style inputs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from lightning_modules.models.encoder import ModalityEncoder
from lightning_modules.models.layers import ChannelNorm


class FeatureProjection(ModalityEncoder):
    """1x1 convolution, LayerNorm over channels, GELU: per step, so padding never leaks.

    `channels = (a, b)` reads only input channels `[a, b)`: the standard THUMOS14 features
    hold RGB in 0-1023 and flow in 1024-2047, and a student and its teacher read the two
    halves of the same loaded tensor.
    """

    time_dim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        modality: str = "features",
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(modality, out_channels)
        if channels is not None and (
            len(channels) != 2 or channels[1] - channels[0] != in_channels
        ):
            raise ValueError(f"channels {channels} must be a range [a, b) of in_channels width")
        self.channels = None if channels is None else (int(channels[0]), int(channels[1]))
        self.project = nn.Conv1d(in_channels, out_channels, 1)
        self.norm = ChannelNorm(out_channels)
        self.activation = nn.GELU()

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        x = inputs[self.modality]
        if self.channels is not None:
            x = x[:, self.channels[0] : self.channels[1]]
        return self.activation(self.norm(self.project(x)))
