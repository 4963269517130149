"""Optical flow: computed from decoded RGB frames (DIS, TV-L1 or RAFT), stored quantised to 8 bits.

Real pipelines compute flow from the decoded frames of the video they will train on, then store
it quantised to 8 bits: TSN/I3D/denseflow as a folder of grayscale JPEG pairs per video
(`flow_x_00001.jpg`, `flow_y_00001.jpg`, ..., one pair per pair of frames, bound ±20 px). The
project's own format keeps the same idea in one file per video: an H.264 RGB stream in lossless
mode (`libx264rgb`, crf 0), red = x, green = y, blue = 128, one frame per video frame (the last
repeats the one before). Both store `128 + flow * 127 / bound` rounded and clipped to [1, 255];
decord reads the video back exactly, so a flow clip is decoded like an RGB clip.

Three estimators, each mapping consecutive frames to the flow from each frame to the next:

- `dis`: OpenCV's DIS (medium preset), fast on a CPU; the synthetic benchmark's flow.
- `tvl1`: OpenCV's dual TV-L1 (default parameters), what I3D's and TSN's flow streams were
  trained on; needs the contrib build of OpenCV (`opencv-contrib-python-headless`).
- `raft`: torchvision's RAFT (large or small) with weights from a local file, for a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

FLOW_BOUND_PX = 10.0
"""Largest displacement (pixels per frame) that survives quantisation in the synthetic
benchmark's flow videos (64x64 frames); larger ones are clipped."""

JPEG_BOUND_PX = 20.0
"""The bound of TSN's, I3D's and denseflow's JPEG flow (and `crossdistill flow`'s default)."""

FlowMethod = Literal["dis", "tvl1", "raft"]
RaftModel = Literal["large", "small"]


def compute_flow(frames: np.ndarray, method: FlowEstimator | None = None) -> np.ndarray:
    """Dense flow from frame t to t+1 for RGB frames `(T, H, W, 3)` uint8 (DIS by default).

    Returns `(T, H, W, 2)` float32 in pixels per frame. The last frame has no successor and
    repeats the flow of the one before, so flow and RGB share one time grid.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"expected RGB frames (T>=2, H, W, 3), got shape {frames.shape}")
    flows = list((method or OpenCVFlow("dis")).pairs(iter(frames)))
    return np.stack([*flows, flows[-1]])


class FlowEstimator:
    """Flow between consecutive frames of a stream of RGB frames `(H, W, 3)` uint8."""

    def pairs(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """`(H, W, 2)` float32 pixels from each frame to the next (one fewer than frames)."""
        raise NotImplementedError


class OpenCVFlow(FlowEstimator):
    """OpenCV's DIS (medium preset) or dual TV-L1 (default parameters) on grayscale frames."""

    def __init__(self, method: Literal["dis", "tvl1"]) -> None:
        if method == "tvl1" and not hasattr(cv2, "optflow"):
            raise RuntimeError(
                "TV-L1 flow needs OpenCV's contrib modules (cv2.optflow), which this OpenCV "
                f"{cv2.__version__} lacks. Fix: pip uninstall -y opencv-python-headless "
                "opencv-contrib-python-headless && pip install opencv-contrib-python-headless "
                "(the two packages share the cv2 module: install only the contrib one), or use "
                "--method dis"
            )
        self.method = method

    def _algorithm(self) -> Any:
        if self.method == "tvl1":
            return cv2.optflow.DualTVL1OpticalFlow_create()
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def pairs(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        algorithm = self._algorithm()
        previous = None
        for frame in frames:
            gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            if previous is not None:
                yield algorithm.calc(previous, gray, None).astype(np.float32, copy=False)
            previous = gray


class RaftFlow(FlowEstimator):
    """torchvision's RAFT (Teed and Deng, ECCV 2020) with weights from a local file.

    Args:
        weights: a state dict of torchvision's `raft_large` or `raft_small` (`torch.save` of
            `model.state_dict()`, as torchvision's own weight files are); nothing is downloaded.
        model: `large` or `small`, the architecture the weights are for.
        device: where RAFT runs (`cuda`, `cpu`; on a CPU it is slow).
        batch: pairs of frames per forward pass.
        updates: RAFT's iterative refinements (torchvision's default 12).

    Frames are padded (edge pixels repeated) to sides divisible by 8 and at least 128 pixels, as
    RAFT's correlation pyramid needs, and the flow is cropped back.
    """

    def __init__(
        self,
        weights: Path,
        model: RaftModel = "large",
        device: str = "cpu",
        batch: int = 8,
        updates: int = 12,
    ) -> None:
        import torch
        from torchvision.models import optical_flow

        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(
                f"RAFT weights not found: {weights}. Fix: pass --weights with a local copy of "
                f"torchvision's raft_{model} weights (Raft_{model.title()}_Weights.DEFAULT, "
                "downloaded once on a machine with internet access); nothing is downloaded here"
            )
        network = {"large": optical_flow.raft_large, "small": optical_flow.raft_small}[model]()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            network.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{weights}: not a state dict of torchvision's raft_{model} ({str(err)[:300]}). "
                "Fix: pass the weights of that model, or the model the weights are for "
                "(--raft-model large|small)"
            ) from err
        self.network = network.eval().to(device)
        self.device, self.batch, self.updates = device, batch, updates

    def pairs(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        chunk: list[np.ndarray] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) == self.batch + 1:
                yield from self._flow(chunk)
                chunk = chunk[-1:]
        if len(chunk) > 1:
            yield from self._flow(chunk)

    def _flow(self, frames: list[np.ndarray]) -> Iterable[np.ndarray]:
        import torch
        import torch.nn.functional as F

        height, width = frames[0].shape[:2]
        images = torch.from_numpy(np.stack(frames)).to(self.device)
        images = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        pad = (0, max(128, width + -width % 8) - width, 0, max(128, height + -height % 8) - height)
        images = F.pad(images, pad, mode="replicate")
        with torch.inference_mode():
            flow = self.network(images[:-1], images[1:], num_flow_updates=self.updates)[-1]
        flow = flow[:, :, :height, :width].permute(0, 2, 3, 1).float().cpu().numpy()
        return list(flow)


def flow_estimator(
    method: FlowMethod,
    weights: Path | None = None,
    raft_model: RaftModel = "large",
    device: str = "cpu",
) -> FlowEstimator:
    """The estimator named by `method` (RAFT needs its `weights` file)."""
    if method == "raft":
        if weights is None:
            raise ValueError(
                "RAFT needs its weights: pass --weights FILE (a state dict of torchvision's "
                f"raft_{raft_model}); nothing is downloaded"
            )
        return RaftFlow(weights, raft_model, device)
    if method in ("dis", "tvl1"):
        return OpenCVFlow(method)
    raise ValueError(f"unknown flow method {method!r}: dis, tvl1 or raft")


def quantize_flow(flow: np.ndarray, bound: float = FLOW_BOUND_PX) -> np.ndarray:
    """Flow `(..., 2)` in pixels to 8-bit RGB `(..., 3)` for storage as video (blue 128)."""
    scaled = np.clip(np.rint(128.0 + flow * (127.0 / bound)), 1, 255).astype(np.uint8)
    blue = np.full((*flow.shape[:-1], 1), 128, dtype=np.uint8)
    return np.concatenate([scaled, blue], axis=-1)


def dequantize_flow(rgb: np.ndarray, bound: float = FLOW_BOUND_PX) -> np.ndarray:
    """8-bit RGB `(..., 3)` as stored by `quantize_flow` back to flow `(..., 2)` in pixels."""
    return (rgb[..., :2].astype(np.float32) - 128.0) * (bound / 127.0)
