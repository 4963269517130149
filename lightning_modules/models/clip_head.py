"""Recognition head for trimmed clips: pooled features to one or several classifiers."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_modules.models.layers import masked_mean
from lightning_modules.models.outputs import HEAD_TAP, ModelOutput


class ClipHead(nn.Module):
    """Mean over valid steps, dropout, one linear classifier per head.

    `num_classes` is an int for a single head (`logits (B, K)`) or a dict such as
    `{"verb": 97, "noun": 300}` for EPIC-KITCHENS (`logits` a dict of `(B, K_head)`).
    Taps: `pooled (B, C)`.
    """

    def __init__(
        self, in_channels: int, num_classes: int | dict[str, int], dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.dropout = nn.Dropout(dropout)
        if isinstance(num_classes, int):
            self.classify: nn.Module = nn.Linear(in_channels, num_classes)
        else:
            self.classify = nn.ModuleDict(
                {name: nn.Linear(in_channels, k) for name, k in num_classes.items()}
            )

    def forward(self, features: Tensor, mask: Tensor) -> ModelOutput:
        pooled = masked_mean(features, mask)
        x = self.dropout(pooled)
        if isinstance(self.classify, nn.ModuleDict):
            logits: Tensor | dict[str, Tensor] = {
                name: layer(x) for name, layer in self.classify.items()
            }
        else:
            logits = self.classify(x)
        return ModelOutput(
            embeddings=features, logits=logits, mask=mask, taps={"pooled": pooled, HEAD_TAP: pooled}
        )
