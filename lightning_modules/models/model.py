"""The composed model: an encoder, then a head; the same class for every task family."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from lightning_modules.models.outputs import ModelOutput


class ActionModel(nn.Module):
    """`encoder(inputs, mask) -> (B, C, T)` on the grid, then `head(features, mask) -> ModelOutput`.

    The task family is the head's (PDAN / MS-TCN: dense, SegmentHead: segments, ClipHead:
    clips); one composition class keeps the teacher, the student and the teacher cache calling
    every model the same way. Any module with that call and an `out_channels` attribute can be
    the encoder (a modality encoder, or a fusion of several); heads take features, so a
    distillation student can run a head on features it made itself.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        if encoder.out_channels != head.in_channels:
            raise ValueError(
                f"the encoder gives {encoder.out_channels} channels, the head takes "
                f"{head.in_channels}: set the head's in_channels to {encoder.out_channels}"
            )
        self.encoder = encoder
        self.head = head

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> ModelOutput:
        """`inputs` is `batch["inputs"]`, `mask` is `batch["mask"]` `(B, T)`."""
        return self.head(self.encoder(inputs, mask), mask)
