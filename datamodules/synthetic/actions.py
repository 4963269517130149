"""The synthetic benchmark's action vocabulary.

Every class is defined by how the actor moves (travel, rotation, limb dynamics), never by how it
looks: colours, sizes and textures are drawn per video independently of the labels. Body actions
are mutually exclusive; arm actions can run on top of a body action, which makes the benchmark
multi-label like Charades or TSU.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionClass:
    name: str
    track: str  # "body" (exclusive) or "arms" (may overlap a body action)
    description: str


ACTIONS: tuple[ActionClass, ...] = (
    ActionClass("walk_left", "body", "walks towards the left edge, legs swinging"),
    ActionClass("walk_right", "body", "walks towards the right edge, legs swinging"),
    ActionClass("jump", "body", "hops up and down on the spot"),
    ActionClass("spin", "body", "turns around in the image plane, whole turns"),
    ActionClass("squat", "body", "bends the knees and stands up again, repeatedly"),
    ActionClass("approach_object", "body", "walks up to one of the objects in the scene"),
    ActionClass("wave", "arms", "raises one arm and waves the forearm"),
    ActionClass("flap_arms", "arms", "raises and lowers both arms, repeatedly"),
)

CLASS_NAMES: tuple[str, ...] = tuple(action.name for action in ACTIONS)
BODY_ACTIONS: tuple[str, ...] = tuple(a.name for a in ACTIONS if a.track == "body")
ARM_ACTIONS: tuple[str, ...] = tuple(a.name for a in ACTIONS if a.track == "arms")

MIRROR_PAIRS: tuple[tuple[str, str], ...] = (("walk_left", "walk_right"),)
"""Classes that trade places when a video is mirrored horizontally (for flip augmentation)."""

JOINTS: tuple[str, ...] = (
    "head",
    "neck",
    "hip",
    "left_elbow",
    "left_hand",
    "right_elbow",
    "right_hand",
    "left_knee",
    "left_foot",
    "right_knee",
    "right_foot",
)
"""Keypoint order of the pose files; shoulders sit at the neck in this stick figure."""

BONES: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (1, 3),
    (3, 4),
    (1, 5),
    (5, 6),
    (2, 7),
    (7, 8),
    (2, 9),
    (9, 10),
)
"""Skeleton edges (joint index pairs), for graph networks over keypoints."""

OBJECT_CATEGORIES: tuple[str, ...] = ("person", "ball", "box", "bar")
"""Box categories; the actor is `person`, distractor objects are the others."""
