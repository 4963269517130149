"""The whole-video pass: a frozen model run over every video of a data config, its per-step
outputs put back on each video's grid. `crossdistill extract-features` runs an encoder over
evaluation tiles (`lightning_modules.feature_extraction`); `crossdistill cache-teachers` runs
each teacher over whole videos, one window each (`lightning_modules.teachers.cache`). Both go
through `checked_subsets` and `stitched_outputs`; windows are placed by the grid's one
stitching rule, `datamodules.grid.place_window`, which test predictions use too.
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
from datamodules.grid import TimeGrid, place_window, video_steps
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
) -> UntrimmedDataset:
    """Each video as one window from 0 over its evaluation tiles, reading `sources`, without
    augmentation or targets (whatever the data's task: the pass runs a frozen model)."""
    assert datamodule.window_seconds is not None
    return UntrimmedDataset(
        WholeVideos(records, datamodule.window_seconds, datamodule.window_steps),
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
    collate = Collate(dataset.sources, Untargeted())  # `run` reads no targets
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    video: tuple[str, np.ndarray, np.ndarray] | None = None
    done: set[str] = set()
    for batch in loader:
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
