"""Body keypoints on the grid as `(T, K, 3)`: x, y normalised to the shared square view, score.

Files are `.npy` arrays `(frames, K, 3)` of x, y in pixels of the video and a confidence (0 for a
joint the detector missed), their joints in the order of a named layout (`coco17`, `ntu25`:
`datamodules.skeletons`) or of the configured joint names. Coordinates are divided by the centred
square of the frame that the video sources also cut, so keypoints, boxes and pixels agree on where
things are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid, expected_frames, interpolate, resampled_positions
from datamodules.skeletons import skeleton
from datamodules.sources.base import (
    DataError,
    Problem,
    Source,
    centre_square,
    load_array,
    non_finite,
    steps_info,
)


class KeypointSource(Source):
    """Keypoints `(T, K, 3)` from npy files.

    Args:
        path: the keypoint file of each id, e.g. `pose/{video_id}.npy` (manifest default).
        image_size: `[width, height]` of the frames the keypoints were detected on, in pixels
            (manifest default: the benchmark's frame size).
        joints: joint names in file order (manifest default); `left_*`/`right_*` pairs are
            swapped by a horizontal flip, and their number is the K every file must have.
        fps: frame rate of the files; default the manifest's, else the annotation's.
        resample: interpolate linearly over the annotated duration when the file's length
            disagrees with it by more than one frame.
        layout: a named skeleton layout, `coco17` or `ntu25` (`datamodules.skeletons`), which
            gives the joint names; every file must have its number of joints.
    """

    kind = "keypoints"
    time_axis = 0

    def __init__(
        self,
        path: str | None = None,
        image_size: tuple[int, int] | None = None,
        joints: list[str] | None = None,
        fps: float | None = None,
        resample: bool = False,
        layout: str | None = None,
    ) -> None:
        super().__init__(path, resample)
        self.image_size = image_size
        self.layout = layout
        if layout is not None:
            named = list(skeleton(layout).joints)
            if joints is not None and list(joints) != named:
                raise ValueError(
                    f"keypoints: joints {list(joints)} disagree with layout {layout!r} "
                    f"({named}). Fix: give one of them"
                )
            joints = named
        self.joints = joints
        self.fps = fps

    def configure(self, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        if self.fps is None:
            self.fps = manifest.get("fps")
        if self.joints is None:
            self.joints = entry.get("joints")
        if self.image_size is None and "size" in manifest:
            self.image_size = (manifest["size"], manifest["size"])
        if self.image_size is None:
            raise DataError(
                f"modality {self.name!r}: keypoints need the frame size to be normalised. Fix: "
                f"set modalities.{self.name}.init_args.image_size: [width, height]"
            )

    def flip_order(self) -> np.ndarray | None:
        """Joint order after a horizontal flip (left and right swapped), None without names."""
        if not self.joints:
            return None
        position = {name: i for i, name in enumerate(self.joints)}
        mirrored = {"left": "right", "right": "left"}
        order = []
        for name in self.joints:
            side, _, rest = name.partition("_")
            twin = f"{mirrored[side]}_{rest}" if side in mirrored else name
            order.append(position.get(twin, position[name]))
        return np.array(order)

    def _fps(self, record: VideoRecord) -> float:
        fps = self.fps or record.fps
        if not fps:
            raise DataError(
                f"{self.file(record.video_id)}: the frame rate of the keypoints is unknown. Fix: "
                f"set modalities.{self.name}.init_args.fps, or give fps in the annotations"
            )
        return fps

    def check_file(self, path: Path, record: VideoRecord) -> list[Problem]:
        array = load_array(path)
        joints = len(self.joints) if self.joints else None
        if array.ndim != 3 or array.shape[2] != 3 or (joints and array.shape[1] != joints):
            wanted = f"(T, {joints or 'K'}, 3)"
            return [
                self.problem(
                    path,
                    record,
                    f"has shape {array.shape}, not {wanted}",
                    f"store keypoints as {wanted} [x, y, confidence]"
                    + (f" for the {joints} joints {self.joints}" if joints else "")
                    + (
                        f", as layout {self.layout!r} has them, or choose the layout of the "
                        "files (modalities.NAME.init_args.layout: coco17 or ntu25)"
                        if self.layout
                        else ""
                    ),
                )
            ]
        if bad := non_finite(array):
            return [
                self.problem(
                    path, record, f"holds {bad} NaN/Inf values", "store missed joints as 0, 0, 0"
                )
            ]
        if record.duration is None:
            return []
        expected = expected_frames(record.duration, self._fps(record))
        return self.length_problem(path, record, array.shape[0], expected, "frames")

    def duration(self, record: VideoRecord) -> float | None:
        return load_array(self.file(record.video_id)).shape[0] / self._fps(record)

    def load(self, record: VideoRecord, grid: TimeGrid) -> dict[str, Tensor]:
        array = load_array(self.file(record.video_id))
        times, valid = steps_info(grid, record)
        out = np.zeros((grid.steps, *array.shape[1:]), dtype=np.float32)
        if self.resample:
            out[valid] = interpolate(
                array, resampled_positions(times[valid], record.duration, len(array))
            )
        else:
            index = self.frame_index(times[valid], self._fps(record), len(array), record.duration)
            out[valid] = array[index]
        x0, y0, side = centre_square(*self.image_size)
        out[valid, :, 0] = (out[valid, :, 0] - x0) / side
        out[valid, :, 1] = (out[valid, :, 1] - y0) / side
        return {self.name: torch.from_numpy(out)}

    def sample_shapes(self, steps: int, record: VideoRecord) -> dict[str, tuple[int, ...]]:
        joints = (
            len(self.joints) if self.joints else load_array(self.file(record.video_id)).shape[1]
        )
        return {self.name: (steps, joints, 3)}
