"""Pixels of a synthetic video: a textured background, distractor objects, the actor, noise.

Appearance (every colour, the texture, the actor's size) is drawn per video and independent of
the labels, so a model can only name an action from how things move.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.actions import BONES
from datamodules.synthetic.kinematics import Trajectory

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing keeps slow motion smooth
_SCALE = 1 << _SHIFT


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random static texture: smooth colour blobs, a faint periodic pattern and grain."""
    coarse = rng.uniform(40, 215, size=(rng.integers(3, 7), rng.integers(3, 7), 3))
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    image += stripes[..., None] * rng.uniform(0, 25, size=3)
    image += rng.normal(0, rng.uniform(3, 10), size=image.shape)
    return np.clip(image, 0, 255).astype(np.float32)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return round(float(xy[0]) * _SCALE), round(float(xy[1]) * _SCALE)


def render_frames(
    rng: np.random.Generator, trajectory: Trajectory, size: int, noise_std: float
) -> np.ndarray:
    """Draw every frame; returns `(T, H, W, 3)` uint8 RGB."""
    base = background(rng, size)
    body_color = tuple(float(c) for c in rng.integers(0, 256, size=3))
    limb_color = tuple(float(c) for c in rng.integers(0, 256, size=3))
    head_color = tuple(float(c) for c in rng.integers(0, 256, size=3))
    shape = trajectory.shape
    width = max(1, round(float(shape.limb_width)))
    n_frames = trajectory.joints.shape[0]
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    flicker = rng.normal(0, 2.0, size=n_frames)
    for t in range(n_frames):
        canvas = base.copy()
        for obj in trajectory.objects:
            _draw_object(canvas, obj.category, obj.positions[t], obj.size, obj.color)
        joints = trajectory.joints[t]
        for a, b in BONES:
            color = body_color if (a, b) in ((0, 1), (1, 2)) else limb_color
            thickness = width + 1 if (a, b) == (1, 2) else width
            cv2.line(
                canvas, _point(joints[a]), _point(joints[b]), color, thickness, cv2.LINE_AA, _SHIFT
            )
        radius = round(float(shape.head_radius) * _SCALE)
        cv2.circle(canvas, _point(joints[0]), radius, head_color, -1, cv2.LINE_AA, _SHIFT)
        canvas += rng.normal(flicker[t], noise_std, size=canvas.shape).astype(np.float32)
        frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    return frames


def _draw_object(
    canvas: np.ndarray,
    category: str,
    centre: np.ndarray,
    radius: float,
    color: tuple[int, int, int],
) -> None:
    color_f = tuple(float(c) for c in color)
    if category == "ball":
        cv2.circle(canvas, _point(centre), int(radius * _SCALE), color_f, -1, cv2.LINE_AA, _SHIFT)
        return
    half = (
        np.array([radius, radius]) if category == "box" else np.array([1.8 * radius, 0.6 * radius])
    )
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half + centre
    cv2.fillConvexPoly(
        canvas, np.rint(corners * _SCALE).astype(np.int32), color_f, cv2.LINE_AA, _SHIFT
    )


def object_half_extent(category: str, radius: float) -> np.ndarray:
    """Half width and height of an object as drawn, for its bounding box."""
    if category == "bar":
        return np.array([1.8 * radius, 0.6 * radius])
    return np.array([radius, radius])
