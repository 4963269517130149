"""`UntrimmedDataset`: windows of videos as `Sample`s, and the collate that batches them.

A sample holds every configured modality on the window's grid, the mask of steps inside the
video, the targets of the task and the window's place (`meta`). A clip evaluated with `V` test
views is one sample whose inputs and mask have `V` rows; batched, the `V` views of a sample are
contiguous rows of `inputs` and `mask` (`B * V` rows) while `targets` and `meta` keep `B` rows.
Batched by `Collate`:

    batch = {
      "inputs": {name: Tensor},   # rgb (B, 3, T, S, S) in [0, 1]; flow (B, 2, T, S, S) in pixels
                                  # / bound; keypoints (B, T, K, 3); boxes (B, T, N, 6) with
                                  # "<name>_mask" (B, T, N); features (B, D, T)
      "mask": (B, T) bool,        # steps inside the video (False: padding)
      "targets": {...},           # the task's (`datamodules.tasks`), e.g. "frames" (B, T, K)
      "meta": {"video_id": [str], "t0", "t1", "stride", "duration": (B,) float64 seconds
               (t0, t1 of the first view), "window_index": (B,) long},
    }

A file that fails while loading raises a `DataError` naming it (and, from a DataLoader worker,
reaches the main process with that message), never a bare decoder traceback.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.sampling import Draw, Window, WindowSampler
from datamodules.sources.base import DataError, Source
from datamodules.tasks import Labels, TaskData, pad
from datamodules.transforms import JointTransform

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One sample of `V` windows (views; 1 but for clip test views): inputs per modality with a
    leading view axis, valid-step mask `(V, T)`, targets and meta of the sample."""

    inputs: dict[str, Tensor]
    mask: Tensor
    targets: dict[str, Any]
    meta: dict[str, Any]


class UntrimmedDataset(Dataset):
    """Samples of the windows a sampler cuts, with every source loaded on the window's grid.

    Args:
        sampler: the windows of each sample (training windows, evaluation tiles or clips).
        sources: modality name -> source.
        task: the data side of the task, which builds each sample's targets.
        classes: the label vocabulary (target index = position).
        transform: the joint augmentation (`JointTransform(sources, None)` for none).
        verb_classes, noun_classes: vocabularies of verb/noun clip targets (EPIC-KITCHENS);
            empty for single-label clips.
        mirror: label -> label it becomes when the transform flips a sample horizontally.
    """

    def __init__(
        self,
        sampler: WindowSampler,
        sources: Mapping[str, Source],
        task: TaskData,
        classes: Sequence[str],
        transform: JointTransform,
        verb_classes: Sequence[str] = (),
        noun_classes: Sequence[str] = (),
        mirror: Mapping[str, str] | None = None,
    ) -> None:
        self.sampler = sampler
        self.mirror = dict(mirror or {})
        self.sources = dict(sources)
        self.task = task
        self.class_index = {name: i for i, name in enumerate(classes)}
        self.verb_index = {name: i for i, name in enumerate(verb_classes)}
        self.noun_index = {name: i for i, name in enumerate(noun_classes)}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.sampler)

    def reading(self, modalities: Sequence[str]) -> UntrimmedDataset:
        """The same samples with only these modalities loaded."""
        view = copy.copy(self)
        view.sources = {name: self.sources[name] for name in modalities}
        view.transform = JointTransform(view.sources, self.transform.augment)
        return view

    skip_broken: bool = False
    """Training under `missing: skip`: a window whose file fails to load (damage the pre-flight
    check did not see) is replaced by the next window, with a warning, instead of stopping the
    fit from a DataLoader worker. Evaluation never skips: every step must be scored."""

    def __getitem__(self, key: int | Draw) -> Sample:
        for attempt in range(min(len(self), 16)):
            try:
                return self._sample(_next_key(key, attempt, len(self)))
            except DataError as err:
                if not (self.skip_broken and self.sampler.random):
                    raise
                log.warning("missing: skip: %s; training on the next window instead", err)
        raise DataError(
            "missing: skip: 16 training windows in a row could not be loaded. Fix: run "
            "`crossdistill data-check --deep` with this config"
        )

    def _sample(self, key: int | Draw) -> Sample:
        index, rng = self._generator(key)
        windows = self.sampler.windows(index, rng)
        views, flips = zip(
            *(self.transform(self._inputs(window), rng) for window in windows), strict=True
        )
        inputs = {key: torch.stack([view[key] for view in views]) for key in views[0]}
        masks = [torch.from_numpy(w.grid.valid(_duration(w))) for w in windows]
        first = windows[0]
        meta = {
            "video_id": first.record.video_id,
            "t0": first.grid.t0,
            "t1": first.grid.t1,
            "stride": first.grid.stride,
            "duration": _duration(first),
            "window_index": first.index,
        }
        targets = self.targets(first, masks[0], mirrored=flips[0])
        return Sample(inputs, torch.stack(masks), targets, meta)

    def _generator(self, key: int | Draw) -> tuple[int, np.random.Generator]:
        """The sample's index and the generator of its random window and augmentation.

        A training `Draw` seeds it from (seed, epoch, index): the sample is the same in the main
        process or any worker, on any rank, and in a run resumed mid-epoch. A bare index (direct
        use) draws a seed from torch's global generator; evaluation samples are fixed and leave
        that generator alone.
        """
        if isinstance(key, Draw):
            return key.index, np.random.default_rng([key.seed, key.epoch, key.index])
        random = self.sampler.random or self.transform.augment is not None
        return key, np.random.default_rng(int(torch.randint(2**62, ()).item()) if random else 0)

    def _inputs(self, window: Window) -> dict[str, Tensor]:
        inputs: dict[str, Tensor] = {}
        for name, source in self.sources.items():
            inputs.update(self._load(name, source, window))
        return inputs

    def _load(self, name: str, source: Source, window: Window) -> dict[str, Tensor]:
        try:
            return source.load(window.record, window.grid)
        except DataError:
            raise
        except Exception as err:
            video = window.record.video_id
            raise DataError(
                f"{source.file(video)}: cannot load modality {name!r} of video {video!r} at "
                f"[{window.grid.t0:g}, {window.grid.t1:g}) s ({type(err).__name__}: {err}). "
                "Fix: run `crossdistill data-check` with this config, then re-create or replace "
                "the file (or set `missing: skip`)"
            ) from err

    def targets(self, window: Window, mask: Tensor, mirrored: bool = False) -> dict[str, Any]:
        """The task's targets of a window, labels swapped as `mirror` says when flipped."""
        index = self.class_index
        if mirrored and self.mirror:
            index = {name: index[self.mirror.get(name, name)] for name in index}
        return self.task.targets(window, mask, Labels(index, self.verb_index, self.noun_index))


class Collate:
    """Batches samples into the batch dict: views become contiguous rows, tensors are padded
    along their time axis (to the longest window of the batch) and the mask with False."""

    def __init__(self, sources: Mapping[str, Source], task: TaskData) -> None:
        self.task = task
        self.time_axes = {name: source.time_axis for name, source in sources.items()}

    def _axis(self, key: str) -> int:
        """Time axis of an input of one view (`<name>_mask` follows its modality)."""
        return self.time_axes.get(key, self.time_axes.get(key.removesuffix("_mask"), 0))

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        steps = max(s.mask.shape[1] for s in samples)
        inputs = {
            key: torch.cat([pad(s.inputs[key], 1 + self._axis(key), steps) for s in samples])
            for key in samples[0].inputs
        }
        mask = torch.cat([pad(s.mask, 1, steps) for s in samples])
        targets = self.task.collate([s.targets for s in samples], steps)
        meta: dict[str, Any] = {"video_id": [s.meta["video_id"] for s in samples]}
        for key in ("t0", "t1", "stride", "duration"):
            meta[key] = torch.tensor([s.meta[key] for s in samples], dtype=torch.float64)
        meta["window_index"] = torch.tensor([s.meta["window_index"] for s in samples])
        return {"inputs": inputs, "mask": mask, "targets": targets, "meta": meta}


def _duration(window: Window) -> float:
    if window.record.duration is None:
        raise ValueError(f"video {window.record.video_id!r} has no duration")
    return window.record.duration


def _next_key(key: int | Draw, offset: int, length: int) -> int | Draw:
    """The key `offset` samples after `key` (same seed and epoch for a training draw)."""
    if offset == 0:
        return key
    if isinstance(key, Draw):
        return key._replace(index=(key.index + offset) % length)
    return (key + offset) % length
