"""MS-TCN dense detection head (Farha & Gall, "MS-TCN: Multi-Stage Temporal Convolutional
Network for Action Segmentation", CVPR 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.models.layers import MaskedConv1d
from lightning_modules.models.outputs import HEAD_TAP, ModelOutput


class DilatedResidualLayer(nn.Module):
    """Dilated 3-tap convolution, ReLU, 1x1 convolution, dropout, residual; padding zeroed."""

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.dilated = MaskedConv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.dropout(self.mix(torch.relu(self.dilated(x, mask))))
        return (x + out) * mask[:, None].to(x.dtype)


class TCNStage(nn.Module):
    """One single-stage TCN: 1x1 conv in, dilated residual layers (1, 2, 4, ...), 1x1 conv out."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.project = nn.Conv1d(in_channels, channels, 1)
        self.layers = nn.ModuleList(
            DilatedResidualLayer(channels, 2**i, dropout) for i in range(layers)
        )
        self.classify = nn.Conv1d(channels, num_classes, 1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(hidden features, logits)."""
        keep = mask[:, None].to(x.dtype)
        hidden = self.project(x) * keep
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden, self.classify(hidden) * keep


class MSTCN(nn.Module):
    """MS-TCN head: a stage on the features, then stages that refine the previous stage's
    probabilities. Every stage's logits are supervised (`extras["stage_logits"]`).

    Multi-label here, so a refinement stage reads per-class sigmoid probabilities where the
    paper's single-label segmentation reads a softmax. Taps: `stage{i}`, each stage's hidden
    features `(B, channels, T)`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stages: int = 4,
        layers: int = 10,
        channels: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stages = nn.ModuleList(
            TCNStage(in_channels if i == 0 else num_classes, channels, num_classes, layers, dropout)
            for i in range(stages)
        )

    def forward(self, features: Tensor, mask: Tensor) -> ModelOutput:
        x, taps, stage_logits = features, {}, []
        for index, stage in enumerate(self.stages):
            hidden, logits = stage(x, mask)
            taps[f"stage{index}"] = hidden
            stage_logits.append(logits)
            x = torch.sigmoid(logits)
        taps[HEAD_TAP] = hidden
        return ModelOutput(
            embeddings=features,
            logits=stage_logits[-1],
            mask=mask,
            taps=taps,
            extras={"stage_logits": torch.stack(stage_logits)},
        )
