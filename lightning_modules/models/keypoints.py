"""Keypoint encoder: a spatial-temporal graph network over the skeleton (Yan et al. AAAI 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from datamodules.skeletons import skeleton as named_skeleton
from lightning_modules.models.encoder import ModalityEncoder


def skeleton_partitions(num_joints: int, bones: Sequence[Sequence[int]]) -> Tensor:
    """`(2, V, V)` normalised adjacency split by hop distance: the joint itself, its neighbours.

    ST-GCN's distance partitioning: the symmetric normalisation `D^-1/2 (I + A) D^-1/2` is
    computed once over the whole neighbourhood and then split, so both subsets share one scale.
    """
    adjacency = torch.eye(num_joints)
    for bone in bones:
        a, b = (int(j) for j in bone)
        if not (0 <= a < num_joints and 0 <= b < num_joints) or a == b:
            raise ValueError(f"bone {tuple(bone)} is not a pair of joints in 0..{num_joints - 1}")
        adjacency[a, b] = adjacency[b, a] = 1.0
    scale = adjacency.sum(1).rsqrt()
    normalised = scale[:, None] * adjacency * scale[None, :]
    self_part = torch.diag(torch.diag(normalised))
    return torch.stack([self_part, normalised - self_part])


class GraphTemporalBlock(nn.Module):
    """One ST-GCN unit: a graph convolution over joints, then a temporal convolution per joint.

    The adjacency partitions are a buffer; a learnable edge-importance mask per block
    reweights existing edges (never adds new ones).
    """

    def __init__(
        self, cin: int, cout: int, partitions: Tensor, temporal_kernel: int, dropout: float
    ) -> None:
        super().__init__()
        self.register_buffer("partitions", partitions)
        self.edge_importance = nn.Parameter(torch.ones_like(partitions))
        self.spatial = nn.Conv2d(cin, cout * partitions.shape[0], 1)
        self.temporal = nn.Sequential(
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, (temporal_kernel, 1), padding=(temporal_kernel // 2, 0)),
            nn.BatchNorm2d(cout),
            nn.Dropout(dropout),
        )
        self.residual = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        """`(B, C, T, V)` to `(B, C', T, V)`."""
        y = rearrange(self.spatial(x), "b (k c) t v -> b k c t v", k=self.partitions.shape[0])
        y = torch.einsum("bkctv,kvw->bctw", y, self.partitions * self.edge_importance)
        return torch.relu(self.temporal(y) + self.residual(x))


class KeypointGCN(ModalityEncoder):
    """ST-GCN encoder for pose `(B, T, V, 3)` = (x, y, confidence); a dropped joint is all zeros.

    Coordinates are normalised per sample (centred on the window's mean joint position, scaled
    by the body's size) so that image size and actor size do not matter, while travel across
    the frame stays visible. The confidence is an input channel and zeroes dropped joints.
    Features are averaged over joints. Padded steps are zeroed on input, so what they held
    never reaches a valid output.

    The graph is a named layout (`skeleton: coco17` or `ntu25`, see `datamodules.skeletons`) or
    given as `num_joints` and `bones` (pairs of 0-based joint indices).
    """

    time_dim = 1

    def __init__(
        self,
        num_joints: int | None = None,
        bones: Sequence[Sequence[int]] | None = None,
        modality: str = "pose",
        channels: Sequence[int] = (32, 64, 64),
        temporal_kernel: int = 9,
        dropout: float = 0.0,
        skeleton: str | None = None,
    ) -> None:
        super().__init__(modality, channels[-1])
        if skeleton is not None:
            if num_joints is not None or bones is not None:
                raise ValueError(
                    f"KeypointGCN: give a skeleton layout ({skeleton!r}) or num_joints and "
                    "bones, not both"
                )
            layout = named_skeleton(skeleton)
            num_joints, bones = layout.num_joints, layout.bones
        if num_joints is None or bones is None:
            raise ValueError(
                "KeypointGCN needs a skeleton layout (skeleton: coco17 or ntu25) or num_joints "
                "and bones"
            )
        partitions = skeleton_partitions(num_joints, bones)
        blocks, cin = [], 3
        for cout in channels:
            blocks.append(GraphTemporalBlock(cin, cout, partitions, temporal_kernel, dropout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)

    def encode(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        return self.per_joint(inputs[self.modality], mask).mean(-1)

    def per_joint(self, pose: Tensor, mask: Tensor) -> Tensor:
        """`(B, C, T, V)` features per joint (equivariant to relabelling joints with the bones)."""
        x = rearrange(normalise_pose(pose, mask), "b t v c -> b c t v")
        for block in self.blocks:
            x = block(x)
        return x


def normalise_pose(pose: Tensor, mask: Tensor) -> Tensor:
    """Centre and scale each sample's `(T, V, 3)` pose over its valid steps and seen joints."""
    xy, confidence = pose[..., :2], pose[..., 2:]
    seen = ((confidence > 0) & mask[:, :, None, None]).to(pose.dtype)
    count = seen.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)
    centre = (xy * seen).sum(dim=(1, 2), keepdim=True) / count
    frame_count = seen.sum(dim=2, keepdim=True).clamp(min=1.0)
    frame_centre = (xy * seen).sum(dim=2, keepdim=True) / frame_count
    spread = ((xy - frame_centre) ** 2).sum(-1, keepdim=True) * seen
    size = (spread.sum(dim=(1, 2), keepdim=True) / count).sqrt().clamp(min=1e-3)
    return torch.cat([(xy - centre) / size * seen, confidence * seen], dim=-1)
