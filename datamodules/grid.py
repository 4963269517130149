"""The time grid every sample carries, and how each kind of file is indexed on it.

A sample is a window `[t0, t1)` in seconds cut into `steps` equal steps; step `i` stands for the
instant `t0 + (i + 0.5) * stride`. Every modality turns those instants into its own indices, so
modalities of different rates (30 fps video, features every 4 frames, 10 fps pose) line up
without any of them knowing about the others:

- frames (video, flow, pose, boxes) at `fps`: the frame on screen at the instant,
  `floor(t * fps)`; frame `j` covers `[j / fps, (j + 1) / fps)`;
- features extracted every `stride` frames over windows of `window` frames at `fps`
  (ActionFormer's rule): feature `i` is centred at `(i * stride + window / 2) / fps`, so the
  instant `t` sits at the fractional feature position `(t * fps - window / 2) / stride`;
- resampled files (a config's `resample: true`): the file's `n` samples are spread evenly over
  the annotated duration, sample `i` centred at `(i + 0.5) * duration / n`.

Steps whose instant lies outside `[0, duration)` are padding: `valid` is False there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_EPS = 1e-6
"""Slack for instants that land exactly on a frame boundary after floating-point arithmetic."""


@dataclass(frozen=True)
class TimeGrid:
    """A window `[t0, t1)` in seconds cut into `steps` equal steps."""

    t0: float
    t1: float
    steps: int

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.t1 > self.t0:
            raise ValueError(f"a grid needs t1 > t0 and steps >= 1, got {self}")

    @property
    def stride(self) -> float:
        """Seconds per step."""
        return (self.t1 - self.t0) / self.steps

    def times(self) -> np.ndarray:
        """The instant each step stands for, `(steps,)` float64 seconds."""
        return self.t0 + (np.arange(self.steps) + 0.5) * self.stride

    def valid(self, duration: float) -> np.ndarray:
        """`(steps,)` bool: True where the step's instant lies inside the video."""
        times = self.times()
        # the same slack as `video_steps`, so tiles and whole-video step counts agree
        return (times >= 0.0) & (times < duration - _EPS * self.stride)


def video_steps(duration: float, stride: float) -> int:
    """How many steps of `stride` seconds, counted from 0, have their instant inside the video."""
    return max(0, math.ceil(duration / stride - 0.5 - _EPS))


def place_window(rows: np.ndarray, window: np.ndarray, t0: float, stride: float) -> None:
    """Put a window's per-step values onto its video's grid, in place: `window` holds the
    window's valid steps `(n, ...)` in order, the first at the instant of `t0`; `rows` is the
    whole video's `(video_steps(duration, stride), ...)`. Steps past the video's end are dropped.
    The one rule by which tiles, whole-video windows and prediction rows are stitched."""
    first = round(t0 / stride)
    window = window[: max(0, len(rows) - first)]
    rows[first : first + len(window)] = window


def frame_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """The frame on screen at each instant, `floor(t * fps)`, as int64."""
    return np.floor(times * fps + _EPS).astype(np.int64)


def feature_positions(times: np.ndarray, fps: float, stride: int, window: int) -> np.ndarray:
    """Fractional feature index of each instant under ActionFormer's centring rule."""
    return (times * fps - window / 2.0) / stride


def resampled_positions(times: np.ndarray, duration: float, length: int) -> np.ndarray:
    """Fractional index of each instant when `length` samples span `duration` evenly."""
    return times * (length / duration) - 0.5


def expected_frames(duration: float, fps: float) -> int:
    """Frames a file of `duration` seconds at `fps` should have."""
    return round(duration * fps)


def expected_features(duration: float, fps: float, stride: int, window: int) -> int:
    """Features a `duration`-second video yields with windows of `window` frames every `stride`."""
    return max(1, (expected_frames(duration, fps) - window) // stride + 1)


def nearest(positions: np.ndarray, length: int) -> np.ndarray:
    """Nearest sample index of each fractional position (halves round up), clamped into the
    file."""
    return np.clip(np.floor(positions + 0.5 + _EPS), 0, length - 1).astype(np.int64)


def interpolate(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Values `(n, ...)` linearly interpolated at fractional positions, clamped at both ends."""
    length = values.shape[0]
    positions = np.clip(positions, 0.0, length - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, length - 1)
    weight = (positions - lower).reshape(-1, *([1] * (values.ndim - 1))).astype(np.float32)
    low = np.asarray(values[lower], dtype=np.float32)
    high = np.asarray(values[upper], dtype=np.float32)
    return low * (1.0 - weight) + high * weight
