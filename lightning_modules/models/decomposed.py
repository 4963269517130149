"""The decomposed student of Lee, Kim, Shim, Wee, Byun, "Decomposed Cross-modal Distillation
for RGB-based Temporal Action Detection", CVPR 2023.

RGB features are split into a motion branch `f_M`, trained only to imitate a flow teacher,
and an appearance branch `f_A`, trained only on ground truth (the objectives are in
`lightning_modules/distillation/decomposed.py`). One branch detector serves both branches;
local attentive fusion in both directions feeds a separate joint detector, the only path
that matters at inference.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lightning_modules.models.layers import ChannelNorm, MaskedConv1d, key_padding_mask
from lightning_modules.models.outputs import ModelOutput

Fusion = Literal["laf", "concat", "sum", "cross_attention"]
JointGradient = Literal["appearance", "both", "none"]


class BranchProjection(nn.Module):
    """One branch's 1D projection of the backbone features: masked conv (`kernel_size` 1 or
    3), LayerNorm over channels, GELU; zero at padded steps."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = MaskedConv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = ChannelNorm(out_channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return F.gelu(self.norm(self.conv(x, mask))) * mask[:, None].to(x.dtype)


def masked_window_mean(x: Tensor, mask: Tensor, window: int | None) -> Tensor:
    """Mean of `(B, C, T)` over valid steps: of the whole sequence `(B, C, 1)` when `window` is
    None, else of the `window` steps centred on each step `(B, C, T)`."""
    keep = mask[:, None].to(x.dtype)
    x = x * keep
    if window is None:
        return x.sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp(min=1.0)
    sums = F.avg_pool1d(x, window, stride=1, padding=window // 2)
    counts = F.avg_pool1d(keep, window, stride=1, padding=window // 2)
    return sums / counts.clamp(min=1.0 / window)


class LocalAttentiveFusion(nn.Module):
    """Lee et al.'s local attentive fusion, one direction: gate the target branch by the
    reference branch, channel by channel and step by step.

    `ω_t = σ((W_q · Agg(target)) ⊙ (W_k · ref_t))`, output `ω_t ⊙ target_t`. `Agg` is the
    masked temporal mean of the target (`window=None`) or its mean over a local window of
    `window` steps (odd). The gate never mixes steps, and there is no residual (our choices).
    """

    def __init__(self, channels: int, window: int | None = None) -> None:
        super().__init__()
        if window is not None and (window < 1 or window % 2 == 0):
            raise ValueError(f"window must be a positive odd number, got {window}")
        self.window = window
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)

    def forward(self, target: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
        context = self.query(masked_window_mean(target, mask, self.window))
        gate = torch.sigmoid(context * self.key(reference))
        return gate * target * mask[:, None].to(target.dtype)


class TemporalCrossAttention(nn.Module):
    """The cross-attention ablation, one direction: each target step attends over the valid
    steps of the reference branch. Unlike a gate it replaces the target by values of the
    other branch, so the target is kept by a residual, then LayerNorm."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm = ChannelNorm(channels)

    def forward(self, target: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
        query, key = target.transpose(1, 2), reference.transpose(1, 2)
        attended, _ = self.attention(
            query, key, key, key_padding_mask=key_padding_mask(mask), need_weights=False
        )
        return self.norm(target + attended.transpose(1, 2)) * mask[:, None].to(target.dtype)


class BidirectionalFusion(nn.Module):
    """A directional fusion applied both ways, concatenated: `[M gated by A, A gated by M]`."""

    def __init__(self, into_motion: nn.Module, into_appearance: nn.Module) -> None:
        super().__init__()
        self.into_motion, self.into_appearance = into_motion, into_appearance

    def forward(self, motion: Tensor, appearance: Tensor, mask: Tensor) -> Tensor:
        return torch.cat(
            [
                self.into_motion(motion, appearance, mask),
                self.into_appearance(appearance, motion, mask),
            ],
            dim=1,
        )


class ConcatFusion(nn.Module):
    """The concat ablation: `[f_M, f_A]` as they are."""

    def forward(self, motion: Tensor, appearance: Tensor, mask: Tensor) -> Tensor:
        return torch.cat([motion, appearance], dim=1)


class SumFusion(nn.Module):
    """The sum ablation: `f_M + f_A` (the joint detector then reads one branch's width)."""

    def forward(self, motion: Tensor, appearance: Tensor, mask: Tensor) -> Tensor:
        return motion + appearance


def make_fusion(
    fusion: Fusion, channels: int, window: int | None, attention_heads: int
) -> tuple[nn.Module, int]:
    """The fusion module and the width of its output."""
    if window is not None and fusion != "laf":
        raise ValueError(f"fusion_window is for fusion='laf', not {fusion!r}")
    if fusion == "laf":
        pair = LocalAttentiveFusion(channels, window), LocalAttentiveFusion(channels, window)
        return BidirectionalFusion(*pair), 2 * channels
    if fusion == "cross_attention":
        pair = (
            TemporalCrossAttention(channels, attention_heads),
            TemporalCrossAttention(channels, attention_heads),
        )
        return BidirectionalFusion(*pair), 2 * channels
    if fusion == "concat":
        return ConcatFusion(), 2 * channels
    if fusion == "sum":
        return SumFusion(), channels
    raise ValueError(f"unknown fusion {fusion!r}: laf, concat, sum or cross_attention")


class DecomposedStudent(nn.Module):
    """Lee et al.'s RGB student: backbone features -> motion and appearance branches -> one
    shared branch detector on each, and a fusion of both into a joint detector.

    `forward(inputs, mask)` returns the joint detector's `ModelOutput` (what the task loss,
    the metrics and inference use), with the branch detectors' outputs nested in
    `extras["motion"]` and `extras["appearance"]`; their `embeddings` are `f_M` and `f_A`.
    `inference_only()` skips the branch detectors (they only serve training).

    Args:
        encoder: `encoder(inputs, mask) -> (B, C, T)` with `out_channels` (any encoder).
        branch_head: the branch detector (a `PDAN`, `SegmentHead`, ...); its `in_channels` is
            the width of both branches.
        joint_head: the joint detector, same task as `branch_head`; its `in_channels` must be
            the fused width: twice the branch width, or the branch width for `fusion="sum"`.
        kernel_size: the branch projections' temporal kernel (1 or 3).
        share_branch_head: one branch detector for both branches (the paper); False gives
            the motion branch its own copy (same initial weights, trained apart: the
            "without sharing" ablation).
        fusion: `laf` (the paper), or the ablations `concat`, `sum`, `cross_attention`.
        fusion_window: LAF's aggregation window (odd); None is the masked temporal mean.
        attention_heads: heads of the `cross_attention` fusion.
        joint_gradient: where the joint detector's (ground-truth) loss flows back through the
            fusion. `appearance` (default, the method): into the appearance branch and through
            it the backbone, never into the motion projection f_M, which learns only to imitate
            the flow teacher. `both`: into both branches (the joint loss then also trains f_M:
            an ablation). `none`: into neither branch, the backbone learns only from the
            branch losses (an ablation).
        detach_motion_in_branch_head: on the motion path, the shared branch detector's
            parameters get no gradient: imitation shapes `f_M`, while the detector learns
            only from the appearance branch's ground truth. Needs a shared head.
    """

    def __init__(
        self,
        encoder: nn.Module,
        branch_head: nn.Module,
        joint_head: nn.Module,
        kernel_size: int = 1,
        share_branch_head: bool = True,
        fusion: Fusion = "laf",
        fusion_window: int | None = None,
        attention_heads: int = 4,
        joint_gradient: JointGradient = "appearance",
        detach_motion_in_branch_head: bool = False,
    ) -> None:
        super().__init__()
        if detach_motion_in_branch_head and not share_branch_head:
            raise ValueError(
                "detach_motion_in_branch_head needs share_branch_head: an unshared motion "
                "detector would never be trained"
            )
        channels = branch_head.in_channels
        self.encoder = encoder
        self.motion = BranchProjection(encoder.out_channels, channels, kernel_size)
        self.appearance = BranchProjection(encoder.out_channels, channels, kernel_size)
        self.branch_head = branch_head
        self.motion_head = None if share_branch_head else copy.deepcopy(branch_head)
        self.fusion, fused_channels = make_fusion(fusion, channels, fusion_window, attention_heads)
        if joint_head.in_channels != fused_channels:
            raise ValueError(
                f"fusion {fusion!r} of two {channels}-channel branches gives {fused_channels} "
                f"channels: set the joint head's in_channels to {fused_channels}"
            )
        self.joint_head = joint_head
        if joint_gradient not in ("appearance", "both", "none"):
            raise ValueError(
                f"joint_gradient must be 'appearance', 'both' or 'none', got {joint_gradient!r}"
            )
        self.joint_gradient = joint_gradient
        self.detach_motion_in_branch_head = detach_motion_in_branch_head
        self.branch_outputs = True

    def inference_only(self, enabled: bool = True) -> DecomposedStudent:
        """Skip (or run again) the branch detectors: at inference only the joint path counts."""
        self.branch_outputs = not enabled
        return self

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> ModelOutput:
        """`inputs` is `batch["inputs"]`, `mask` is `batch["mask"]` `(B, T)`."""
        features = self.encoder(inputs, mask)
        motion, appearance = self.motion(features, mask), self.appearance(features, mask)
        fused = self.fusion(
            motion if self.joint_gradient == "both" else motion.detach(),
            appearance.detach() if self.joint_gradient == "none" else appearance,
            mask,
        )
        output = self.joint_head(fused, mask)
        if not self.branch_outputs:
            return output
        branches = {
            "motion": self._motion_detector(motion, mask),
            "appearance": self.branch_head(appearance, mask),
        }
        return replace(output, extras={**output.extras, **branches})

    def _motion_detector(self, motion: Tensor, mask: Tensor) -> ModelOutput:
        if self.motion_head is not None:
            return self.motion_head(motion, mask)
        if not self.detach_motion_in_branch_head:
            return self.branch_head(motion, mask)
        frozen = {name: p.detach() for name, p in self.branch_head.named_parameters()}
        return functional_call(self.branch_head, frozen, (motion, mask), strict=False)
