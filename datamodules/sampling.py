"""Where samples are cut from videos: random training windows, tiling evaluation windows, clips.

Every sampler turns a dataset index into the `Window`s of one sample: a video, a `TimeGrid`, and
the index that names the window within its video (`meta.window_index`, with the video id the
key metrics use to count every sample once). A sample is one window, except a clip at test time
with several views: its windows share the clip's index and are batched as contiguous rows.

- `TrainWindows`: fixed-length windows at random positions (optionally centred on a random
  annotated action), snapped to the video's step grid; a video yields as many per epoch as it
  has evaluation tiles, so long videos weigh more.
- `EvalWindows`: non-overlapping tiles `[k * W, (k + 1) * W)` from 0; the last one runs past the
  end and its outside steps are padding (mask False). Step `j` of a video (instant
  `(j + 0.5) * stride`) is in tile `j // steps` only, so every step is scored exactly once;
  models that want context beyond a tile get it from the tile itself, not from overlaps.
- `VideoWindows`: one window per video, `[0, duration)` cut into `steps` steps, so the stride is
  the video's own (`duration / steps`): ActivityNet's practice of resampling every video's
  features to a fixed length (ActionFormer: 192 steps), for training and evaluation alike.
- `ClipWindows`: one window per annotated clip (a segment, or a whole trimmed video with a
  clip label), `frames` instants spread uniformly over it: instant `i` sits at
  `start + (i + u) * (end - start) / frames` with `u` drawn in [0, 1) for training and
  `u = (v + 0.5) / views` for test view `v` (all views of a clip form one sample).
- `EvalShardSampler`: shards evaluation windows over DDP ranks in contiguous blocks without
  padding (a `DistributedSampler`, so Lightning keeps it instead of adding a padding one).
- `TrainSampler`: the training order, a pure function of (seed, epoch): each epoch's permutation
  is drawn from `seed + epoch` and sharded over ranks as Lightning's own `DistributedSampler`
  would; it yields `Draw` keys, from which the dataset seeds each sample's random window and
  augmentation, and can start a pass after the samples a mid-epoch checkpoint had consumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple, Protocol

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

from datamodules.annotations import Segment, VideoRecord
from datamodules.grid import TimeGrid, video_steps


@dataclass(frozen=True)
class Window:
    """A sample's place: the video, its grid, its index within the video, and for clips the
    annotated clip."""

    record: VideoRecord
    grid: TimeGrid
    index: int
    clip: Segment | None = None


class WindowSampler(Protocol):
    random: bool
    """Whether `windows` draws from its generator (training); evaluation windows are fixed."""

    def __len__(self) -> int: ...

    def windows(self, index: int, rng: np.random.Generator | None) -> list[Window]:
        """The windows of sample `index`: one, or the test views of a clip."""
        ...


def _duration(record: VideoRecord) -> float:
    if record.duration is None:
        raise ValueError(f"video {record.video_id!r} has no duration; the datamodule sets one")
    return record.duration


def tiles(duration: float, seconds: float, steps: int) -> int:
    """Number of evaluation tiles of `steps` steps that cover a video's steps."""
    return max(1, math.ceil(video_steps(duration, seconds / steps) / steps))


class TrainWindows:
    """Random windows of `seconds` cut into `steps`; `centre_on_action` is the probability of
    centring a window on a random instant of a random annotated action."""

    random = True

    def __init__(
        self,
        records: Sequence[VideoRecord],
        seconds: float,
        steps: int,
        centre_on_action: float = 0.0,
    ) -> None:
        self.records = list(records)
        self.seconds, self.steps = seconds, steps
        self.centre_on_action = centre_on_action
        self.slots = [
            position
            for position, record in enumerate(self.records)
            for _ in range(tiles(_duration(record), seconds, steps))
        ]

    def __len__(self) -> int:
        return len(self.slots)

    def windows(self, index: int, rng: np.random.Generator | None) -> list[Window]:
        assert rng is not None
        record = self.records[self.slots[index]]
        stride = self.seconds / self.steps
        latest = max(0.0, _duration(record) - self.seconds)
        if record.segments and rng.random() < self.centre_on_action:
            segment = record.segments[rng.integers(len(record.segments))]
            centre = rng.uniform(segment.start, max(segment.start, segment.end))
            t0 = centre - self.seconds / 2
        else:
            t0 = rng.uniform(0.0, latest)
        # on the video's step grid, so that training and evaluation see the same instants
        start = min(max(round(t0 / stride), 0), math.floor(latest / stride + 1e-9))
        grid = TimeGrid(start * stride, start * stride + self.seconds, self.steps)
        return [Window(record, grid, index)]


class EvalWindows:
    """Non-overlapping tiles covering every step of every video once."""

    random = False

    def __init__(self, records: Sequence[VideoRecord], seconds: float, steps: int) -> None:
        self.records = list(records)
        self.seconds, self.steps = seconds, steps
        self.tiles = [
            (position, tile)
            for position, record in enumerate(self.records)
            for tile in range(tiles(_duration(record), seconds, steps))
        ]

    def __len__(self) -> int:
        return len(self.tiles)

    def windows(self, index: int, rng: np.random.Generator | None = None) -> list[Window]:
        position, tile = self.tiles[index]
        grid = TimeGrid(tile * self.seconds, (tile + 1) * self.seconds, self.steps)
        return [Window(self.records[position], grid, tile)]


class VideoWindows:
    """Each video as one window of `steps` steps spanning it; no padding, no cut segments."""

    random = False

    def __init__(self, records: Sequence[VideoRecord], steps: int) -> None:
        self.records, self.steps = list(records), steps
        for record in self.records:
            if not _duration(record) > 0:
                raise ValueError(
                    f"video {record.video_id!r} has duration {record.duration:g} s; a window "
                    "spanning it needs a positive one. Fix its duration in the annotations"
                )

    def __len__(self) -> int:
        return len(self.records)

    def windows(self, index: int, rng: np.random.Generator | None = None) -> list[Window]:
        record = self.records[index]
        return [Window(record, TimeGrid(0.0, _duration(record), self.steps), 0)]


def clips_of(record: VideoRecord) -> list[Segment]:
    """The clips a record holds: the whole video when it has a clip label, else its segments."""
    if record.clip_label is not None:
        return [Segment(record.clip_label, 0.0, _duration(record))]
    return list(record.segments)


class ClipWindows:
    """`frames` instants per clip; one random view per clip in training, `views` at test (one
    sample per clip either way)."""

    def __init__(
        self, records: Sequence[VideoRecord], frames: int, views: int = 1, train: bool = False
    ) -> None:
        if views < 1:
            raise ValueError(f"views must be at least 1, got {views}")
        self.frames, self.random = frames, train
        self.views = 1 if train else views
        self.clips = [
            (record, number, clip)
            for record in records
            for number, clip in enumerate(clips_of(record))
        ]
        for record, _, clip in self.clips:
            if clip.end <= clip.start:
                raise ValueError(
                    f"video {record.video_id!r}: clip {clip.label!r} at {clip.start:g}-"
                    f"{clip.end:g} s has no length; remove it from the annotations"
                )

    def __len__(self) -> int:
        return len(self.clips)

    def windows(self, index: int, rng: np.random.Generator | None = None) -> list[Window]:
        record, number, clip = self.clips[index]
        if self.random:
            assert rng is not None
            offsets = [rng.random()]
        else:
            offsets = [(view + 0.5) / self.views for view in range(self.views)]
        stride = (clip.end - clip.start) / self.frames
        grids = [
            TimeGrid(t0, t0 + self.frames * stride, self.frames)
            for t0 in (clip.start + (offset - 0.5) * stride for offset in offsets)
        ]
        return [Window(record, grid, number, clip) for grid in grids]


class EvalShardSampler(DistributedSampler):
    """Contiguous blocks of evaluation windows per rank, with no padding: every window is seen
    by exactly one rank (ranks may get one batch more or less than others)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        total = len(dataset)  # type: ignore[arg-type]
        self.start = rank * total // num_replicas
        self.stop = (rank + 1) * total // num_replicas

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


class Draw(NamedTuple):
    """A training sample's key: its index, and the seed and epoch of its random draws, so that the
    sample is the same whichever process loads it, and again when a resumed run reaches it."""

    index: int
    seed: int
    epoch: int


class TrainSampler(DistributedSampler):
    """This rank's share of epoch `epoch`'s permutation (drawn from `seed + epoch`, padded and
    sharded exactly as the `DistributedSampler` Lightning would add, so Lightning keeps this one),
    as `Draw` keys. The next pass skips its first `start` samples (then `start` is back to 0):
    those that a checkpoint written within the epoch had already trained on. Its length stays the
    whole share: Lightning counts the skipped batches as done."""

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[Draw]:  # type: ignore[override]
        start, self.start = self.start, 0
        epoch = self.epoch
        order = islice(super().__iter__(), start, None)
        return (Draw(index, self.seed, epoch) for index in order)
