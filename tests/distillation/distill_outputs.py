"""Small `ModelOutput`s from the real heads, as leaf tensors, for the objective tests."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from lightning_modules.distillation.base import features
from lightning_modules.models import PDAN, ClipHead, ConvPyramid, ModelOutput, SegmentHead

GRAD_EXTRAS = ("offsets", "stage_logits")


def padded_mask(batch: int, steps: int, valid: int) -> Tensor:
    """Sample 0 fully valid, the others valid for their first `valid` steps."""
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[1:, valid:] = False
    return mask


def leaves(output: ModelOutput) -> ModelOutput:
    """A copy whose float tensors are fresh leaves that require grad (gradient checks)."""

    def leaf(x: Tensor) -> Tensor:
        return x.detach().clone().requires_grad_(True)

    logits = output.logits
    logits = leaf(logits) if isinstance(logits, Tensor) else {k: leaf(v) for k, v in logits.items()}
    extras = {k: leaf(v) if k in GRAD_EXTRAS else v for k, v in output.extras.items()}
    return replace(
        output,
        embeddings=leaf(output.embeddings),
        logits=logits,
        taps={k: leaf(v) for k, v in output.taps.items()},
        extras=extras,
    )


def grad_tensors(output: ModelOutput) -> list[Tensor]:
    """The leaf tensors of `leaves(output)`."""
    logits = output.logits
    tensors = [output.embeddings, *output.taps.values()]
    tensors += [logits] if isinstance(logits, Tensor) else list(logits.values())
    return tensors + [output.extras[k] for k in GRAD_EXTRAS if k in output.extras]


@torch.no_grad()
def dense_output(seed: int, channels: int = 8, classes: int = 4, scale: float = 3.0) -> ModelOutput:
    """PDAN outputs, batch 3, 10 steps, samples 1-2 valid for 6 steps; tap `block1`."""
    torch.manual_seed(seed)
    mask = padded_mask(3, 10, 6)
    head = PDAN(channels, classes, hidden_channels=6, dilations=(1, 2), dropout=0.0)
    x = torch.randn(3, channels, 10) * mask[:, None]
    out = head(x, mask)
    out = replace(out, logits=out.logits * scale, extras={"stage_logits": out.logits[None] * scale})
    return leaves(out)


@torch.no_grad()
def segment_output(seed: int, channels: int = 8, classes: int = 3) -> ModelOutput:
    """SegmentHead over a 3-level ConvPyramid, batch 2, 14 steps (padded grid 16), sample 1
    valid for 9 steps; taps `level0..2`."""
    torch.manual_seed(seed)
    mask = padded_mask(2, 14, 9)
    head = SegmentHead(ConvPyramid(channels, 6, levels=3), classes, prior_prob=0.3)
    x = torch.randn(2, channels, 14) * mask[:, None]
    out = head(x, mask)
    return leaves(replace(out, logits=out.logits * 3.0))


@torch.no_grad()
def clip_output(seed: int, channels: int = 8, heads: dict | int | None = None) -> ModelOutput:
    """ClipHead outputs, batch 4, 5 steps, samples 1-3 valid for 3; `verb`/`noun` heads by
    default; tap `pooled`."""
    torch.manual_seed(seed)
    mask = padded_mask(4, 5, 3)
    head = ClipHead(channels, heads if heads is not None else {"verb": 5, "noun": 4})
    x = torch.randn(4, channels, 5) * mask[:, None]
    out = head(x, mask)
    logits = out.logits
    logits = logits * 3.0 if isinstance(logits, Tensor) else {k: v * 3 for k, v in logits.items()}
    return leaves(replace(out, logits=logits))


def scramble_padding(output: ModelOutput, seed: int = 123) -> ModelOutput:
    """A copy with new random values wherever the output is padding: embeddings and taps at
    padded steps or invalid pyramid points, logits and offsets at invalid positions."""
    generator = torch.Generator().manual_seed(seed)

    def noisy(x: Tensor, valid: Tensor) -> Tensor:
        noise = torch.randn(x.shape, generator=generator) * 5
        return torch.where(valid, x.detach(), noise)

    mask = output.mask
    positions = output.extras.get("point_mask", mask)
    logits = output.logits
    if isinstance(logits, Tensor) and logits.dim() == 3:
        logits = noisy(logits, positions[:, None])
    extras = dict(output.extras)
    if "offsets" in extras:
        extras["offsets"] = noisy(extras["offsets"], positions[:, None])
    if "stage_logits" in extras:
        extras["stage_logits"] = noisy(extras["stage_logits"], mask[None, :, None])
    taps = {}
    for name, tap in output.taps.items():
        taps[name] = tap if tap.dim() == 2 else noisy(tap, features(output, name)[1][:, None])
    return replace(
        output,
        embeddings=noisy(output.embeddings, mask[:, None]),
        logits=logits,
        taps=taps,
        extras=extras,
    )


def to_bf16(output: ModelOutput) -> ModelOutput:
    """The same outputs in bfloat16, as a `bf16-mixed` model gives them."""

    def cast(x: Tensor) -> Tensor:
        return x.to(torch.bfloat16) if x.is_floating_point() else x

    logits = output.logits
    logits = cast(logits) if isinstance(logits, Tensor) else {k: cast(v) for k, v in logits.items()}
    return replace(
        output,
        embeddings=cast(output.embeddings),
        logits=logits,
        taps={k: cast(v) for k, v in output.taps.items()},
        extras={k: cast(v) if k in GRAD_EXTRAS else v for k, v in output.extras.items()},
    )
