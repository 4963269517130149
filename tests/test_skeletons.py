"""Named skeleton layouts (COCO-17, NTU RGB+D 25) in the keypoint source and the pose encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.annotations import VideoRecord
from datamodules.skeletons import COCO17, NTU25, SKELETONS, skeleton
from datamodules.sources import KeypointSource
from lightning_modules.models import KeypointGCN


def tree_edges_connected(joints: int, bones) -> bool:
    reached, frontier = {0}, [0]
    while frontier:
        joint = frontier.pop()
        for a, b in bones:
            for here, there in ((a, b), (b, a)):
                if here == joint and there not in reached:
                    reached.add(there)
                    frontier.append(there)
    return len(reached) == joints


def test_the_published_layouts() -> None:
    assert COCO17.num_joints == 17 and len(COCO17.bones) == 19
    assert COCO17.joints[:3] == ("nose", "left_eye", "right_eye")
    assert COCO17.joints[-1] == "right_ankle"
    # COCO's skeleton is given 1-based: its first bone is [16, 14], left ankle to left knee
    assert COCO17.bones[0] == (15, 13)
    assert NTU25.num_joints == 25 and len(NTU25.bones) == 24  # a tree
    assert NTU25.joints[0] == "spine_base" and NTU25.joints[20] == "spine_shoulder"
    for layout in SKELETONS.values():
        assert tree_edges_connected(layout.num_joints, layout.bones)
        assert len({frozenset(b) for b in layout.bones}) == len(layout.bones)
    with pytest.raises(ValueError, match=r"unknown skeleton layout 'openpose18'.*coco17, ntu25"):
        skeleton("openpose18")


@pytest.mark.parametrize("name", ["coco17", "ntu25"])
def test_a_layout_names_the_joints_and_checks_the_files(tmp_path: Path, name: str) -> None:
    layout = SKELETONS[name]
    joints = layout.num_joints
    np.save(tmp_path / "ok.npy", np.ones((20, joints, 3), dtype=np.float32))
    np.save(tmp_path / "other.npy", np.ones((20, joints + 1, 3), dtype=np.float32))
    source = KeypointSource("{video_id}.npy", image_size=(64, 48), layout=name, fps=10.0)
    source.bind("pose", tmp_path, None)
    assert source.joints == list(layout.joints)
    assert source.check(VideoRecord("ok", "training", 2.0)) == []
    assert source.sample_shapes(8, VideoRecord("ok", "training", 2.0)) == {"pose": (8, joints, 3)}
    [problem] = source.check(VideoRecord("other", "training", 2.0))
    assert f"has shape (20, {joints + 1}, 3), not (T, {joints}, 3)" in problem.what
    assert f"layout {name!r}" in problem.fix
    # a flip swaps left and right joints, and keeps the middle ones
    order = source.flip_order()
    position = {joint: i for i, joint in enumerate(layout.joints)}
    assert order[position["left_shoulder"]] == position["right_shoulder"]
    assert order[position["right_ankle"]] == position["left_ankle"]
    middle = "nose" if name == "coco17" else "spine_base"
    assert order[position[middle]] == position[middle]
    assert sorted(order) == list(range(joints))


def test_a_layout_and_other_joint_names_conflict() -> None:
    with pytest.raises(ValueError, match="disagree with layout 'coco17'"):
        KeypointSource("{video_id}.npy", joints=["a", "b"], layout="coco17")
    assert KeypointSource("p.npy", joints=list(COCO17.joints), layout="coco17").joints


@pytest.mark.parametrize("name", ["coco17", "ntu25"])
def test_the_pose_encoder_builds_its_graph_from_a_layout(name: str) -> None:
    joints = SKELETONS[name].num_joints
    encoder = KeypointGCN(skeleton=name, channels=(8, 16))
    by_hand = KeypointGCN(joints, [list(b) for b in SKELETONS[name].bones], channels=(8, 16))
    assert torch.equal(encoder.blocks[0].partitions, by_hand.blocks[0].partitions)
    pose = torch.rand(2, 12, joints, 3)
    mask = torch.ones(2, 12, dtype=torch.bool)
    assert encoder.encode({"pose": pose}, mask).shape == (2, 16, 12)


def test_the_pose_encoder_needs_one_graph() -> None:
    with pytest.raises(ValueError, match="not both"):
        KeypointGCN(17, [[0, 1]], skeleton="coco17")
    with pytest.raises(ValueError, match="skeleton: coco17 or ntu25"):
        KeypointGCN()
