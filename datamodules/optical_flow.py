"""Optical flow: computed with OpenCV from decoded RGB frames, and stored as lossless RGB video.

Real pipelines compute flow from the decoded frames of the video they will train on, then store
it quantised to 8 bits (TSN/I3D store x and y as JPEG pairs with a bound of ±20 px). We keep the
same idea in one file per video: an H.264 RGB stream in lossless mode (`libx264rgb`, crf 0), red
= x, green = y, blue = 128, each `128 + flow * 127 / bound` clipped to [1, 255]. decord reads it
back exactly, so a flow clip is decoded like an RGB clip.
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_BOUND_PX = 10.0
"""Largest displacement (pixels per frame) that survives quantisation; larger ones are clipped."""


def compute_flow(frames: np.ndarray) -> np.ndarray:
    """Dense flow from frame t to t+1 with OpenCV's DIS, for RGB frames `(T, H, W, 3)` uint8.

    Returns `(T, H, W, 2)` float32 in pixels per frame. The last frame has no successor and
    repeats the flow of the one before, so flow and RGB share one time grid.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"expected RGB frames (T>=2, H, W, 3), got shape {frames.shape}")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    flow = np.empty((*frames.shape[:3], 2), dtype=np.float32)
    for t in range(len(gray) - 1):
        flow[t] = dis.calc(gray[t], gray[t + 1], None)
    flow[-1] = flow[-2]
    return flow


def quantize_flow(flow: np.ndarray, bound: float = FLOW_BOUND_PX) -> np.ndarray:
    """Flow `(..., 2)` in pixels to 8-bit RGB `(..., 3)` for storage as video."""
    scaled = np.clip(np.rint(128.0 + flow * (127.0 / bound)), 1, 255).astype(np.uint8)
    blue = np.full((*flow.shape[:-1], 1), 128, dtype=np.uint8)
    return np.concatenate([scaled, blue], axis=-1)


def dequantize_flow(rgb: np.ndarray, bound: float = FLOW_BOUND_PX) -> np.ndarray:
    """8-bit RGB `(..., 3)` as stored by `quantize_flow` back to flow `(..., 2)` in pixels."""
    return (rgb[..., :2].astype(np.float32) - 128.0) * (bound / 127.0)
