"""The whole-video pass: a frozen model run over every video of a data config, its per-step
outputs put back on each video's grid. `crossdistill extract-features` runs an encoder over
evaluation tiles (`lightning_modules.feature_extraction`); `crossdistill cache-teachers` runs
each teacher over whole videos, one window each (`lightning_modules.teachers.cache`). Both go
through `checked_subsets` and `stitched_outputs`; windows are placed by the grid's one
stitching rule, `datamodules.grid.place_window`, which test predictions use too. I3D-style
snippet features (`extract-features --snippet-frames W --snippet-stride S`) read each video as
`Snippets`, one window of W frames every S frames, through `snippet_outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.annotations import VideoRecord
from datamodules.datamodule import MultimodalDataModule, SubsetReport
from datamodules.dataset import Collate, UntrimmedDataset
from datamodules.grid import TimeGrid, expected_features, place_window, video_steps
from datamodules.sampling import Window, tiles
from datamodules.sources.base import DataError, Source
from datamodules.tasks import Untargeted
from datamodules.transforms import JointTransform


class WholeVideos:
    """One window per video from 0, covering its evaluation tiles (padding as the last tile)."""

    random = False

    def __init__(self, records: Sequence[VideoRecord], seconds: float, steps: int) -> None:
        self.records, self.seconds, self.steps = list(records), seconds, steps

    def __len__(self) -> int:
        return len(self.records)

    def windows(self, index: int, rng: Any = None) -> list[Window]:
        record = self.records[index]
        assert record.duration is not None
        count = tiles(record.duration, self.seconds, self.steps)
        return [Window(record, TimeGrid(0.0, count * self.seconds, count * self.steps), 0)]


class Snippets:
    """I3D-style snippets: snippet `i` of a video is the `window` frames starting at frame
    `i * stride`, one grid step per frame at `fps` (default each video's annotated rate).
    A video has `expected_features(duration, fps, stride, window)` snippets, the count a
    `FeatureSource` with the same stride, window and fps expects: snippets that would run past
    the last frame are left out, and a video shorter than one window is one snippet of all its
    frames (the rest padding). Sample `k` is one snippet, videos in order."""

    random = False

    def __init__(
        self, records: Sequence[VideoRecord], stride: int, window: int, fps: float | None = None
    ) -> None:
        if stride < 1 or window < 1:
            raise ValueError(f"snippet stride and window must be positive, got {stride}, {window}")
        self.stride, self.window = stride, window
        self.snippets: list[tuple[VideoRecord, float, int]] = []
        for record in records:
            rate = fps or record.fps
            if not rate:
                raise DataError(
                    f"video {record.video_id!r}: its frame rate is unknown, and snippets are "
                    "counted in frames. Fix: pass --fps, or give fps in the annotations"
                )
            assert record.duration is not None
            count = expected_features(record.duration, rate, stride, window)
            self.snippets.extend((record, float(rate), i) for i in range(count))

    def __len__(self) -> int:
        return len(self.snippets)

    def windows(self, index: int, rng: Any = None) -> list[Window]:
        record, fps, i = self.snippets[index]
        start = i * self.stride
        grid = TimeGrid(start / fps, (start + self.window) / fps, self.window)
        return [Window(record, grid, i)]


def checked_subsets(
    datamodule: MultimodalDataModule, doing: str, strict: bool = True
) -> list[SubsetReport]:
    """Every video of the configured subsets, each once (training parts included), checked: a
    subset with problems is a `DataError` naming the first (with `strict`), else its broken
    videos are left out of `usable`."""
    reports = []
    for role in datamodule.distinct_roles():
        report = datamodule.inspect(role)
        if report.all_problems and strict:
            first = report.all_problems[0]
            raise DataError(
                f"cannot {doing} over subset {report.name!r}: {first} "
                f"({len(report.all_problems)} problem(s); `crossdistill data-check` lists them)"
            )
        reports.append(report)
    return reports


def whole_video_dataset(
    datamodule: MultimodalDataModule,
    records: Sequence[VideoRecord],
    sources: Mapping[str, Source],
    windows: WholeVideos | Snippets | None = None,
) -> UntrimmedDataset:
    """Each video as one window from 0 over its evaluation tiles (or as `windows`, e.g. its
    `Snippets`), reading `sources`, without augmentation or targets (whatever the data's task:
    the pass runs a frozen model)."""
    if windows is None:
        assert datamodule.window_seconds is not None
        windows = WholeVideos(records, datamodule.window_seconds, datamodule.window_steps)
    return UntrimmedDataset(
        windows,
        dict(sources),
        Untargeted(),
        datamodule.annotation_set.classes,
        JointTransform(sources, None),
    )


@torch.no_grad()
def stitched_outputs(
    run: Callable[[dict[str, Any]], Tensor], dataset: UntrimmedDataset, batch_size: int = 1
) -> Iterator[tuple[str, np.ndarray]]:
    """Run `run` (a batch -> per-step values `(B, D, T)`) over the windows of `dataset` in
    order and yield each video's values on its whole grid, `(steps, D)` float32, once its last
    window has run. Every step of a video must lie in exactly the valid steps of its windows."""
    video: tuple[str, np.ndarray, np.ndarray] | None = None
    done: set[str] = set()
    for batch in _batches(dataset, batch_size):
        values = run(batch).float()
        meta = batch["meta"]
        for b, video_id in enumerate(meta["video_id"]):
            stride, t0 = float(meta["stride"][b]), float(meta["t0"][b])
            if video is None or video[0] != video_id:
                if video is not None:
                    done.add(video[0])
                    yield _finished(*video)
                if video_id in done:
                    raise AssertionError(f"video {video_id!r}: its windows are not consecutive")
                steps = video_steps(float(meta["duration"][b]), stride)
                rows = np.zeros((steps, values.shape[1]), np.float32)
                video = (video_id, rows, np.zeros(steps, bool))
            mask = batch["mask"][b].bool().cpu()
            count = int(mask.sum())
            if not bool(mask[:count].all()):
                raise AssertionError(
                    f"video {video_id!r}: the valid steps of the window at {t0:g} s are not its "
                    f"first {count}"
                )
            place_window(video[1], values[b][:, mask].T.cpu().numpy(), t0, stride)
            place_window(video[2], np.ones(count, bool), t0, stride)
    if video is not None:
        yield _finished(*video)


def _finished(video_id: str, rows: np.ndarray, covered: np.ndarray) -> tuple[str, np.ndarray]:
    if not covered.all():
        raise AssertionError(
            f"video {video_id!r}: {int((~covered).sum())} of its {len(covered)} steps are in no "
            "window's valid steps"
        )
    return video_id, rows


def _batches(dataset: UntrimmedDataset, batch_size: int) -> DataLoader:
    collate = Collate(dataset.sources, Untargeted())  # the pass reads no targets
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate)


@torch.no_grad()
def snippet_outputs(
    run: Callable[[dict[str, Any]], Tensor], dataset: UntrimmedDataset, batch_size: int = 1
) -> Iterator[tuple[str, np.ndarray]]:
    """Run `run` (a batch of snippets -> one value each, `(B, D)`) over the `Snippets` of
    `dataset` in order and yield each video's values, `(snippets, D)` float32, once its last
    snippet has run."""
    video: tuple[str, list[np.ndarray]] | None = None
    done: set[str] = set()
    for batch in _batches(dataset, batch_size):
        values = run(batch).float().cpu().numpy()
        for b, video_id in enumerate(batch["meta"]["video_id"]):
            if video is None or video[0] != video_id:
                if video is not None:
                    done.add(video[0])
                    yield video[0], np.stack(video[1])
                if video_id in done:
                    raise AssertionError(f"video {video_id!r}: its snippets are not consecutive")
                video = (video_id, [])
            index = int(batch["meta"]["window_index"][b])
            if index != len(video[1]):
                raise AssertionError(f"video {video_id!r}: snippet {index} out of order")
            video[1].append(values[b])
    if video is not None:
        yield video[0], np.stack(video[1])
