"""What sensors and detectors would report about a synthetic video: noisy keypoints and boxes.

A pose estimator jitters joints and misses some; an object detector jitters boxes, misses some
objects and fires on a few things that are not there. Both formats are what real pipelines store:
`(T, K, 3)` keypoints with a confidence, and per-frame box lists with category and score.
"""

from __future__ import annotations

import numpy as np

from datamodules.synthetic.actions import OBJECT_CATEGORIES
from datamodules.synthetic.kinematics import Trajectory
from datamodules.synthetic.render import object_half_extent

KEYPOINT_NOISE_PX = 0.7
KEYPOINT_DROP_RATE = 0.05
BOX_JITTER_PX = 1.0
BOX_MISS_RATE = {"person": 0.05, "object": 0.12}
FALSE_BOX_RATE = 0.03


def keypoints(rng: np.random.Generator, trajectory: Trajectory, size: int) -> np.ndarray:
    """`(T, K, 3)` float32: x, y in pixels and a confidence; a dropped joint is (0, 0, 0)."""
    joints = trajectory.joints + rng.normal(0, KEYPOINT_NOISE_PX, size=trajectory.joints.shape)
    confidence = rng.uniform(0.6, 1.0, size=joints.shape[:2])
    inside = np.all((joints >= 0) & (joints <= size - 1), axis=-1)
    kept = inside & (rng.random(joints.shape[:2]) >= KEYPOINT_DROP_RATE)
    result = np.concatenate([joints, confidence[..., None]], axis=-1)
    result[~kept] = 0.0
    return result.astype(np.float32)


def actor_boxes(trajectory: Trajectory) -> np.ndarray:
    """Exact `(T, 4)` x1, y1, x2, y2 box of the actor: its joints padded by limb and head size."""
    pad = max(trajectory.shape.limb_width / 2, 0.5)
    head = trajectory.joints[:, 0]
    low = np.minimum(trajectory.joints.min(axis=1) - pad, head - trajectory.shape.head_radius)
    high = np.maximum(trajectory.joints.max(axis=1) + pad, head + trajectory.shape.head_radius)
    return np.concatenate([low, high], axis=-1)


def detections(rng: np.random.Generator, trajectory: Trajectory, size: int) -> list[list[dict]]:
    """Per frame, a list of `{"box2d": {x1, y1, x2, y2}, "category", "score"}` detections."""
    truth = [("person", actor_boxes(trajectory))]
    for obj in trajectory.objects:
        half = object_half_extent(obj.category, obj.size)
        truth.append(
            (obj.category, np.concatenate([obj.positions - half, obj.positions + half], -1))
        )
    frames = []
    for t in range(trajectory.joints.shape[0]):
        labels = []
        for category, boxes in truth:
            miss = BOX_MISS_RATE["person" if category == "person" else "object"]
            if rng.random() < miss:
                continue
            box = boxes[t] + rng.normal(0, BOX_JITTER_PX, size=4)
            labels.append(_detection(box, category, rng.uniform(0.5, 1.0), size))
        if rng.random() < FALSE_BOX_RATE:
            x, y = rng.uniform(0, size - 8, size=2)
            w, h = rng.uniform(3, 8, size=2)
            category = str(rng.choice(OBJECT_CATEGORIES))
            labels.append(
                _detection(np.array([x, y, x + w, y + h]), category, rng.uniform(0.3, 0.6), size)
            )
        frames.append(labels)
    return frames


def _detection(box: np.ndarray, category: str, score: float, size: int) -> dict:
    x1, y1, x2, y2 = np.clip(box, 0, size - 1)
    coords = {"x1": x1, "y1": y1, "x2": max(x2, x1 + 1e-3), "y2": max(y2, y1 + 1e-3)}
    return {
        "box2d": {key: round(float(value), 2) for key, value in coords.items()},
        "category": category,
        "score": round(float(score), 3),
    }
