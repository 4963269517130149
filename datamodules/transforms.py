"""Joint spatial augmentation: one random crop, scale and flip per sample, applied to every
modality in its own terms, so that pixels, flow, keypoints and boxes keep describing one scene.

All image modalities arrive as the same square view (see `datamodules.sources`), and keypoints
and boxes in coordinates normalised to it, so a crop is one square `(x0, y0, side)` in [0, 1]
units whatever each modality's resolution:

- RGB and flow are resampled to the crop at their own size; flow displacements grow by
  `1 / side` (zooming in magnifies motion) and a horizontal flip negates flow x;
- keypoints and boxes are mapped into the crop; a flip mirrors x, swaps left/right joints and
  the box corners; joints leaving the view get confidence 0, boxes leaving it are masked;
- colour jitter (brightness, contrast, saturation) touches RGB only, the same for all frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.sources.base import Source
from datamodules.sources.keypoints import KeypointSource


@dataclass(frozen=True)
class Augment:
    """Training augmentation (evaluation uses none).

    Args:
        min_scale: smallest crop, as a fraction of the frame side (1 disables cropping).
        flip: mirror half of the samples horizontally.
        colour_jitter: strength of the RGB jitter, factors drawn from `[1 - j, 1 + j]` (0 = off).
        mirror_pairs: classes that trade places under a horizontal flip (`[walk_left,
            walk_right]`, Something-Something's "left to right" / "right to left"), so a flip
            never teaches a wrong label. The synthetic benchmark's manifest supplies its own.
    """

    min_scale: float = 0.8
    flip: bool = True
    colour_jitter: float = 0.2
    mirror_pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= 1 or not 0 <= self.colour_jitter < 1:
            raise ValueError(f"need 0 < min_scale <= 1 and 0 <= colour_jitter < 1: {self}")


@dataclass(frozen=True)
class SpatialParams:
    """One sample's draw: crop square in normalised units, flip, and RGB jitter factors."""

    x0: float = 0.0
    y0: float = 0.0
    side: float = 1.0
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

    @property
    def crops(self) -> bool:
        return self.side != 1.0 or self.flip

    @classmethod
    def draw(cls, augment: Augment, rng: np.random.Generator) -> SpatialParams:
        side = float(rng.uniform(augment.min_scale, 1.0))
        jitter = augment.colour_jitter
        return cls(
            x0=float(rng.uniform(0.0, 1.0 - side)),
            y0=float(rng.uniform(0.0, 1.0 - side)),
            side=side,
            flip=augment.flip and bool(rng.random() < 0.5),
            brightness=float(rng.uniform(1 - jitter, 1 + jitter)),
            contrast=float(rng.uniform(1 - jitter, 1 + jitter)),
            saturation=float(rng.uniform(1 - jitter, 1 + jitter)),
        )


class JointTransform:
    """Applies one `SpatialParams` draw to every modality of a sample, by each source's kind."""

    def __init__(self, sources: Mapping[str, Source], augment: Augment | None) -> None:
        self.sources = dict(sources)
        self.augment = augment

    def __call__(
        self, inputs: dict[str, Tensor], rng: np.random.Generator
    ) -> tuple[dict[str, Tensor], bool]:
        """The transformed inputs, and whether they were mirrored (labels may have to swap)."""
        if self.augment is None:
            return inputs, False
        params = SpatialParams.draw(self.augment, rng)
        out = dict(inputs)
        for name, source in self.sources.items():
            if source.kind == "rgb":
                out[name] = colour_jitter(crop_images(inputs[name], params), params)
            elif source.kind == "flow":
                out[name] = crop_flow(inputs[name], params)
            elif source.kind == "keypoints":
                order = source.flip_order() if isinstance(source, KeypointSource) else None
                out[name] = crop_keypoints(inputs[name], params, order)
            elif source.kind == "boxes":
                mask_name = f"{name}_mask"
                out[name], out[mask_name] = crop_boxes(inputs[name], inputs[mask_name], params)
        return out, params.flip


def crop_images(images: Tensor, params: SpatialParams) -> Tensor:
    """`(C, T, S, S)` resampled to the crop square (mirrored if flipped), same size."""
    if not params.crops:
        return images
    channels, steps, height, width = images.shape
    mirror = -1.0 if params.flip else 1.0
    # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1]
    theta = torch.tensor(
        [
            [mirror * params.side, 0.0, 2.0 * params.x0 + params.side - 1.0],
            [0.0, params.side, 2.0 * params.y0 + params.side - 1.0],
        ],
        dtype=images.dtype,
    ).expand(steps, 2, 3)
    grid = F.affine_grid(theta, [steps, channels, height, width], align_corners=False)
    frames = images.permute(1, 0, 2, 3)
    cropped = F.grid_sample(
        frames, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return cropped.permute(1, 0, 2, 3).contiguous()


def crop_flow(flow: Tensor, params: SpatialParams) -> Tensor:
    """Flow `(2, T, S, S)` cropped like the frames, displacements in the crop's pixels."""
    if not params.crops:
        return flow
    out = crop_images(flow, params) / params.side
    if params.flip:
        out[0].neg_()
    return out


def _map_x(x: Tensor, params: SpatialParams) -> Tensor:
    x = (x - params.x0) / params.side
    return 1.0 - x if params.flip else x


def _map_y(y: Tensor, params: SpatialParams) -> Tensor:
    return (y - params.y0) / params.side


def crop_keypoints(points: Tensor, params: SpatialParams, flip_order: np.ndarray | None) -> Tensor:
    """Keypoints `(T, K, 3)` in the crop's coordinates; joints outside get confidence 0."""
    if not params.crops:
        return points
    out = points.clone()
    out[..., 0] = _map_x(points[..., 0], params)
    out[..., 1] = _map_y(points[..., 1], params)
    inside = (out[..., :2] >= 0).all(-1) & (out[..., :2] <= 1).all(-1)
    out[..., 2] = torch.where(inside, out[..., 2], torch.zeros_like(out[..., 2]))
    if params.flip and flip_order is not None:
        out = out[:, torch.from_numpy(flip_order)]
    return out


def crop_boxes(boxes: Tensor, mask: Tensor, params: SpatialParams) -> tuple[Tensor, Tensor]:
    """Boxes `(T, N, 6)` clipped to the crop; boxes left with no area are masked and zeroed."""
    if not params.crops:
        return boxes, mask
    out = boxes.clone()
    xs = _map_x(boxes[..., [0, 2]], params)
    if params.flip:
        xs = xs.flip(-1)  # the mirrored right edge is the new left edge
    out[..., [0, 2]] = xs.clamp(0.0, 1.0)
    out[..., [1, 3]] = _map_y(boxes[..., [1, 3]], params).clamp(0.0, 1.0)
    keep = mask & (out[..., 2] > out[..., 0]) & (out[..., 3] > out[..., 1])
    return out * keep.unsqueeze(-1), keep


def colour_jitter(rgb: Tensor, params: SpatialParams) -> Tensor:
    """Brightness, contrast and saturation of RGB `(3, T, H, W)` in [0, 1], one draw per clip."""
    if params.brightness == params.contrast == params.saturation == 1.0:
        return rgb
    grey_weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(3, 1, 1, 1)
    out = rgb * params.brightness
    mean = (out * grey_weights).sum(0).mean()
    out = (out - mean) * params.contrast + mean
    grey = (out * grey_weights).sum(0, keepdim=True)
    out = grey + (out - grey) * params.saturation
    return out.clamp_(0.0, 1.0)
