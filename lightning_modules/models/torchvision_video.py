"""Standard pretrained video backbones of `torchvision.models.video` as modality encoders.

The network is built with `weights=None` (nothing is ever downloaded) and takes its weights from
a local state-dict file of torchvision's architecture, such as the published Kinetics-400 weights
saved on a machine with internet:

    torch.save(torchvision.models.video.r2plus1d_18(weights="KINETICS400_V1").state_dict(), path)

What each architecture gets, from the `transforms` of its published Kinetics-400 weights
(torchvision's `VideoClassification` preset) and its builder:

- `r3d_18`, `r2plus1d_18`: 512 channels; mean (0.43216, 0.394666, 0.37645), std (0.22803,
  0.22145, 0.216989) (the preset's defaults); trained on 16-frame clips of 112 x 112; temporal
  feature map at T/8.
- `s3d`: 1024 channels; the same mean and std; 224 x 224, evaluated on 128-frame clips (at
  least 14); temporal map at T/8.
- `mvit_v2_s`: 768 channels; mean 0.45, std 0.225 (every channel); 16 frames of 224 x 224,
  fixed; the token map of each clip at T/2.
- `swin3d_t`: 768 channels; mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) (ImageNet's);
  224 x 224, 32-frame clips; temporal map at T/2.

Only MViT is built for one input size: its relative position tables are sized for 16 frames of
224 x 224 (torchvision's `_mvit` builder), so its frames are resized to 224 and cut into clips of
16 frames. The convolutional networks and the Swin transformer (windows, padded patches) take any
size, and give their temporal feature map for the whole window at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision.models.video as tv
from torch import Tensor, nn

from lightning_modules.models.encoder import ModalityEncoder
from lightning_modules.models.layers import resample_time

Arch = Literal["r3d_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"]

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def _resnet_map(net: nn.Module, x: Tensor) -> Tensor:
    x = net.stem(x)
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
    return x.mean(dim=(3, 4))


def _s3d_map(net: nn.Module, x: Tensor) -> Tensor:
    return net.features(x).mean(dim=(3, 4))


def _swin_map(net: nn.Module, x: Tensor) -> Tensor:
    x = net.norm(net.features(net.pos_drop(net.patch_embed(x))))  # (B, T, H, W, C)
    return x.mean(dim=(2, 3)).transpose(1, 2)


def _mvit_map(net: nn.Module, x: Tensor) -> Tensor:
    x = net.conv_proj(x)
    thw = tuple(x.shape[2:])
    x = net.pos_encoding(x.flatten(2).transpose(1, 2))
    for block in net.blocks:
        x, thw = block(x, thw)
    tokens = net.norm(x)[:, 1:]  # the class token dropped, the token grid kept
    return tokens.unflatten(1, thw).mean(dim=(2, 3)).transpose(1, 2)


@dataclass(frozen=True)
class ArchSpec:
    """What the encoder needs to know of one torchvision architecture."""

    build: Callable[[], nn.Module]
    channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    temporal_map: Callable[[nn.Module, Tensor], Tensor]
    """`(B, C, T, H, W)` normalised frames -> `(B, channels, T')`, space averaged away."""
    stem: str
    """The first convolution, the one that reads the input channels."""
    head: str
    """The classifier, dropped."""
    min_frames: int = 1
    fixed_frames: int | None = None
    fixed_size: int | None = None


# mean and std of the RGB input, from the transforms of each network's Kinetics-400 weights
KINETICS = (KINETICS_MEAN, KINETICS_STD)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
MVIT = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))

ARCHS: dict[str, ArchSpec] = {
    "r3d_18": ArchSpec(tv.r3d_18, 512, *KINETICS, _resnet_map, "stem.0", "fc"),
    "r2plus1d_18": ArchSpec(tv.r2plus1d_18, 512, *KINETICS, _resnet_map, "stem.0", "fc"),
    # the last max-pooling (2x2x2, no padding) needs two steps: eight frames in
    "s3d": ArchSpec(tv.s3d, 1024, *KINETICS, _s3d_map, "features.0.0.0", "classifier", 8),
    "mvit_v2_s": ArchSpec(tv.mvit_v2_s, 768, *MVIT, _mvit_map, "conv_proj", "head", 16, 16, 224),
    "swin3d_t": ArchSpec(tv.swin3d_t, 768, *IMAGENET, _swin_map, "patch_embed.proj", "head"),
}


class TorchvisionVideoEncoder(ModalityEncoder):
    """A `torchvision.models.video` network on RGB or optical-flow frames `(B, C, T, H, W)`.

    The classifier is dropped; the output is the network's last feature map, space averaged,
    time kept (`out_channels` is the network's feature width), brought back to the sample's grid
    by the `ModalityEncoder` contract: so one encoder serves dense, segment and clip tasks. RGB
    arrives in [0, 1] (`VideoSource`) and is normalised with the mean and std of the
    architecture's Kinetics-400 weights (table in the module docstring); flow arrives as
    displacement / `bound`, about [-1, 1] (`FlowSource`), the range two-stream I3D feeds its
    flow stream, and is fed as it is. Padded frames are set to zero after normalisation.

    For flow (`in_channels=2`) the first convolution is replaced by a 2-channel one whose
    kernel is the RGB kernel averaged over its input channels and replicated to the two flow
    channels: the cross-modality initialisation of temporal segment networks (Wang et al., ECCV
    2016) that two-stream I3D (Carreira & Zisserman, CVPR 2017) uses to start its flow stream
    from ImageNet/Kinetics RGB weights. A weights file whose first convolution already has two
    input channels (a flow network) is loaded as it is.

    Args:
        arch: the torchvision architecture.
        modality: the input the encoder reads (`rgb`, or `flow` with `in_channels=2`).
        in_channels: 3 (RGB) or 2 (flow).
        pretrained: a state-dict file of torchvision's `arch` (with or without its classifier),
            loaded strictly; None keeps torchvision's random initialisation.
        clip_frames: run the network on consecutive clips of this many frames (the last one
            zero-padded) and join their feature maps, instead of on the whole window at once.
            `mvit_v2_s` is built for 16-frame clips, its default and only value; the others
            default to the whole window.
        freeze: no gradients to the network and its normalisation statistics kept (BatchNorm
            in eval mode), for a fixed feature extractor.
    """

    time_dim = 2

    def __init__(
        self,
        arch: Arch = "r2plus1d_18",
        modality: str = "rgb",
        in_channels: int = 3,
        pretrained: str | None = None,
        clip_frames: int | None = None,
        freeze: bool = False,
    ) -> None:
        if arch not in ARCHS:
            raise ValueError(f"arch {arch!r} is not one of {sorted(ARCHS)}")
        if in_channels not in (2, 3):
            raise ValueError(f"in_channels is 3 (RGB) or 2 (flow), got {in_channels}")
        spec = ARCHS[arch]
        fixed = spec.fixed_frames
        if fixed is not None and clip_frames not in (None, fixed):
            raise ValueError(
                f"{arch} is built for clips of {fixed} frames, not {clip_frames}: set "
                f"clip_frames: {fixed} (or leave it unset)"
            )
        if clip_frames is not None and clip_frames < spec.min_frames:
            raise ValueError(f"{arch} needs clips of at least {spec.min_frames} frames")
        super().__init__(modality, spec.channels)
        self.arch = arch
        self.in_channels = in_channels
        self.spec = spec
        self.clip_frames = fixed or clip_frames
        self.freeze = freeze
        self.register_buffer("mean", torch.tensor(spec.mean).view(3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(3, 1, 1, 1), persistent=False)
        self.backbone = spec.build()
        stem_key = f"{spec.stem}.weight"
        state = read_torchvision_state(pretrained, arch) if pretrained else None
        if state is not None and stem_key in state and state[stem_key].shape[1] == in_channels:
            self._adapt_stem(in_channels)  # a file of a network on these inputs already
        if state is not None:
            load_torchvision_state(self.backbone, state, spec.head, pretrained, arch)
        self.backbone.set_submodule(spec.head, nn.Identity())
        if self.backbone.get_submodule(spec.stem).in_channels != in_channels:
            self._adapt_stem(in_channels)
        if freeze:
            self.backbone.requires_grad_(False)

    def _adapt_stem(self, in_channels: int) -> None:
        """Replace the first convolution by one on `in_channels`, each channel's kernel the
        mean of the old kernel over its input channels (cross-modality initialisation)."""
        old: nn.Conv3d = self.backbone.get_submodule(self.spec.stem)
        new = nn.Conv3d(
            in_channels,
            old.out_channels,
            old.kernel_size,
            old.stride,
            old.padding,
            bias=old.bias is not None,
        )
        with torch.no_grad():
            mean = old.weight.mean(dim=1, keepdim=True)
            new.weight.copy_(mean.expand(-1, in_channels, -1, -1, -1))
            if old.bias is not None:
                new.bias.copy_(old.bias)
        self.backbone.set_submodule(self.spec.stem, new)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def train(self, mode: bool = True) -> TorchvisionVideoEncoder:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        return self

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        frames = inputs[self.modality]
        if self.in_channels == 3:
            frames = (frames - self.mean.to(frames.dtype)) / self.std.to(frames.dtype)
        frames = frames * mask[:, None, :, None, None].to(frames.dtype)
        size = self.spec.fixed_size
        if size is not None and tuple(frames.shape[3:]) != (size, size):
            frames = F.interpolate(
                frames, size=(frames.shape[2], size, size), mode="trilinear", align_corners=False
            )
        count = frames.shape[2]
        length = self.clip_frames or max(count, self.spec.min_frames)
        padded = -(-count // length) * length
        frames = F.pad(frames, (0, 0, 0, 0, 0, padded - count))
        clips = padded // length
        batched = frames.unflatten(2, (clips, length)).movedim(2, 1).flatten(0, 1)
        features = self.spec.temporal_map(self.backbone, batched)  # (B * clips, C, t)
        joined = features.unflatten(0, (-1, clips)).movedim(1, 2).flatten(2)
        return resample_time(joined, padded)[..., :count]


def read_torchvision_state(path: str | Path, arch: str) -> Mapping[str, Tensor]:
    """The tensors of a state-dict file, or an error naming the file and the fix."""
    fix = (
        f"Fix: save torchvision's weights on a machine with internet, "
        f"torch.save(torchvision.models.video.{arch}(weights='KINETICS400_V1').state_dict(), "
        f"'{path}'), and copy the file here"
    )
    if not Path(path).is_file():
        raise FileNotFoundError(f"weights file {path} of {arch} does not exist. {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a state-dict file of {arch} ({error}). {fix}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        what = sorted(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"{path} holds {what}, not a state dict of {arch}. {fix}")
    return state


def load_torchvision_state(
    network: nn.Module, state: Mapping[str, Tensor], head: str, path: str | Path, arch: str
) -> None:
    """Load `state` into `network` strictly, except for the classifier `head` (dropped, so any
    number of classes, or none, is fine)."""
    body = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    expected = {k: v for k, v in network.state_dict().items() if not k.startswith(f"{head}.")}
    problems = [
        *(f"missing {k}" for k in expected if k not in body),
        *(f"unexpected {k}" for k in body if k not in expected),
        *(
            f"{k} is {tuple(body[k].shape)}, {arch} has {tuple(v.shape)}"
            for k, v in expected.items()
            if k in body and body[k].shape != v.shape
        ),
    ]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise ValueError(
            f"{path} is not a state dict of torchvision's {arch}: {'; '.join(problems[:4])}"
            f"{more}. Fix: point pretrained at the weights of {arch} (another architecture's "
            f"file does not fit), saved with torch.save(torchvision.models.video.{arch}("
            f"weights='KINETICS400_V1').state_dict(), path)"
        )
    network.load_state_dict(body, strict=False)
