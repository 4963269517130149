"""Named skeleton layouts: the joints of a keypoint file, in order, and the bones between them.

Selected by name in config: `KeypointSource(layout: coco17)` checks every file's joint count and
names the joints (left/right pairs swap under a horizontal flip); `KeypointGCN(skeleton: coco17)`
builds its graph from the bones. Joint names use `left_*`/`right_*` from the subject's point of
view, as the published definitions do.

- `coco17`: the 17 keypoints of COCO person annotations (and of the pose estimators trained on
  them: OpenPifPaf, HRNet, ViTPose, RTMPose, YOLO-pose), in COCO's order, with the 19 bones of
  COCO's `skeleton` field (1-based joint numbers there; 0-based indices here).
- `ntu25`: the 25 Kinect v2 body joints of NTU RGB+D (60 and 120) and PKU-MMD, in the datasets'
  order (joint 1 = base of the spine), with the 24 bones of Kinect v2's body tree (the hand tip
  joined to the hand and the thumb to the wrist, as the Kinect SDK draws them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Skeleton:
    """Joint names in file order, and bones as pairs of 0-based joint indices."""

    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        for a, b in self.bones:
            if not (0 <= a < len(self.joints) and 0 <= b < len(self.joints)) or a == b:
                raise ValueError(
                    f"bone {(a, b)} is not a pair of joints in 0..{len(self.joints) - 1}"
                )

    @property
    def num_joints(self) -> int:
        return len(self.joints)


def _layout(joints: str, bones: str) -> Skeleton:
    """A skeleton from its joint names (whitespace-separated, in file order) and its bones as
    `a-b` pairs of those names."""
    names = tuple(joints.split())
    index = {name: i for i, name in enumerate(names)}
    pairs = tuple(tuple(index[end] for end in bone.split("-")) for bone in bones.split())
    return Skeleton(names, pairs)  # type: ignore[arg-type]


COCO17 = _layout(
    """nose left_eye right_eye left_ear right_ear left_shoulder right_shoulder left_elbow
    right_elbow left_wrist right_wrist left_hip right_hip left_knee right_knee left_ankle
    right_ankle""",
    # COCO's `skeleton` of the person category, in its order
    """left_ankle-left_knee left_knee-left_hip right_ankle-right_knee right_knee-right_hip
    left_hip-right_hip left_shoulder-left_hip right_shoulder-right_hip
    left_shoulder-right_shoulder left_shoulder-left_elbow right_shoulder-right_elbow
    left_elbow-left_wrist right_elbow-right_wrist left_eye-right_eye nose-left_eye
    nose-right_eye left_eye-left_ear right_eye-right_ear left_ear-left_shoulder
    right_ear-right_shoulder""",
)

NTU25 = _layout(
    """spine_base spine_mid neck head left_shoulder left_elbow left_wrist left_hand
    right_shoulder right_elbow right_wrist right_hand left_hip left_knee left_ankle left_foot
    right_hip right_knee right_ankle right_foot spine_shoulder left_hand_tip left_thumb
    right_hand_tip right_thumb""",
    # Kinect v2's body tree
    """spine_base-spine_mid spine_mid-spine_shoulder spine_shoulder-neck neck-head
    spine_shoulder-left_shoulder left_shoulder-left_elbow left_elbow-left_wrist
    left_wrist-left_hand left_hand-left_hand_tip left_wrist-left_thumb
    spine_shoulder-right_shoulder right_shoulder-right_elbow right_elbow-right_wrist
    right_wrist-right_hand right_hand-right_hand_tip right_wrist-right_thumb
    spine_base-left_hip left_hip-left_knee left_knee-left_ankle left_ankle-left_foot
    spine_base-right_hip right_hip-right_knee right_knee-right_ankle right_ankle-right_foot""",
)

SKELETONS: dict[str, Skeleton] = {"coco17": COCO17, "ntu25": NTU25}


def skeleton(name: str) -> Skeleton:
    """The layout called `name`, or a ValueError listing the known ones."""
    if name not in SKELETONS:
        raise ValueError(
            f"unknown skeleton layout {name!r}; known: {', '.join(SKELETONS)} (or give the "
            "joints/bones themselves)"
        )
    return SKELETONS[name]
