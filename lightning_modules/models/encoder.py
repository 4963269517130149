"""The encoder contract: one modality of the batch in, `(B, C, T)` features on the grid out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from lightning_modules.models.layers import resample_mask, resample_time


class ModalityEncoder(nn.Module):
    """Base of the modality encoders.

    `forward(inputs, mask)` reads `inputs[modality]`, gives the subclass's `encode` the batch
    mask brought to the modality's own number of frames (video may have several frames per
    grid step), and brings the result back to the grid of `mask`, zero at padded steps. So a
    head never needs to know which modality or frame rate fed it.
    """

    time_dim: ClassVar[int]
    """Where time sits in the modality's tensor (batch first)."""

    def __init__(self, modality: str, out_channels: int) -> None:
        super().__init__()
        self.modality = modality
        self.out_channels = out_channels

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        """`(B, out_channels, T)` features, `T = mask.shape[1]`."""
        frames = inputs[self.modality].shape[self.time_dim]
        features = self.encode(inputs, resample_mask(mask, frames))
        return resample_time(features, mask.shape[1]) * mask[:, None].to(features.dtype)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters of a pretrained backbone, which train at `lr *
        backbone_lr_multiplier` (`TaskModule`); none for an encoder trained from scratch."""
        return iter(())

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        """`(B, out_channels, frames)` from the modality, `mask (B, frames)` valid frames."""
        raise NotImplementedError


def load_pretrained(module: nn.Module, path: str | Path) -> None:
    """Load a state-dict file saved from a module of the same class and arguments (strict)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise RuntimeError(
            f"{path} is not a state dict of {type(module).__name__} with these arguments "
            f"(save one with torch.save(encoder.state_dict(), path)): {error}"
        ) from error


def input_modalities(model: nn.Module, skip: Sequence[str] = ()) -> list[str]:
    """The modalities the model's encoders read (outside the submodules named in `skip`)."""
    found = {
        module.modality
        for name, module in model.named_modules()
        if isinstance(module, ModalityEncoder)
        and not any(name == s or name.startswith(f"{s}.") for s in skip)
    }
    return sorted(found)
