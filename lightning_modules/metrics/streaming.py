"""The torchmetrics `Metric`s of training and testing, exact under DDP: each gathers its rows
across ranks and calls the numpy algorithm of its family (`frame_map.py`, `segment_map.py`,
`accuracy.py`, `calibration.py`), which `crossdistill evaluate` calls on files without torch.

Metric states are kept per sample, so that every sample counts once under DDP.

A `DistributedSampler` pads the last batch with samples that another rank also sees. Metrics
that average over rows (frames, predictions, clips) would count those rows twice. Here every
row is owned by a sample id; after the states are gathered across ranks, `compute` keeps one
occurrence of each id and puts samples in one canonical order (ascending id key, rows in the
order they were given), so the result equals the single-process result bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_modules.metrics.accuracy import action_accuracy, topk_accuracy
from lightning_modules.metrics.calibration import expected_calibration_error
from lightning_modules.metrics.frame_map import frame_map
from lightning_modules.metrics.sample_ids import sample_key_array
from lightning_modules.metrics.segment_map import (
    ACTIVITYNET_TIOUS,
    segment_average_precision,
    summarize,
)

SampleIds = Sequence[str] | Sequence[int] | Tensor


def sample_keys(ids: SampleIds) -> Tensor:
    """Stable int64 keys for sample ids (`sample_ids.sample_key_array`), as a tensor to gather."""
    if isinstance(ids, Tensor):
        if ids.dtype.is_floating_point or ids.ndim != 1:
            raise ValueError("sample ids given as a tensor must be a 1-D integer tensor")
        return ids.to(torch.int64).cpu()
    return torch.from_numpy(sample_key_array(ids))


class SampleMetric(Metric):
    """Base for metrics whose states are tables of rows, each row owned by one sample.

    Subclasses declare their tables with `add_table`, append a batch with `append`, and read
    the de-duplicated rows with `rows` in `compute`.
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns: dict[str, dict[str, tuple[torch.dtype, tuple[int, ...]]]] = {}
        self.add_state("sample_key", default=[], dist_reduce_fx="cat")

    def add_table(self, table: str, **columns: tuple[torch.dtype, tuple[int, ...]]) -> None:
        """Declare a table; each column is (dtype, shape of one row)."""
        self._columns[table] = dict(columns)
        self.add_state(f"{table}__count", default=[], dist_reduce_fx="cat")
        for name in columns:
            self.add_state(f"{table}__{name}", default=[], dist_reduce_fx="cat")

    def append(self, ids: SampleIds, tables: dict[str, tuple[Tensor, dict[str, Tensor]]]) -> None:
        """Add a batch of samples; `tables[t] = (owner, columns)`, owner = batch index per row."""
        keys = sample_keys(ids)
        self.sample_key.append(keys.to(self.device))
        for table, (owner, columns) in tables.items():
            owner = owner.to(torch.int64).cpu()
            if owner.numel() and (owner.min() < 0 or owner.max() >= len(keys)):
                raise ValueError(f"{table}: row owner outside the batch of {len(keys)} samples")
            order = torch.argsort(owner, stable=True)
            counts = torch.bincount(owner, minlength=len(keys))
            self._state(table, "count").append(counts.to(self.device))
            for name, (dtype, shape) in self._columns[table].items():
                value = columns[name]
                if tuple(value.shape) != (len(owner), *shape):
                    raise ValueError(
                        f"{table}.{name}: expected shape {(len(owner), *shape)}, "
                        f"got {tuple(value.shape)}"
                    )
                value = value.detach()[order.to(value.device)]
                self._state(table, name).append(value.to(device=self.device, dtype=dtype))

    def rows(self) -> tuple[int, dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]]:
        """(number of distinct samples, {table: (owner, columns)}), duplicates dropped.

        Samples are numbered 0..n-1 in ascending key order; rows keep their order within a
        sample. The first occurrence of a key (in gathered order) wins: duplicates padded in
        by a sampler hold the same data.
        """
        keys = _cat(self.sample_key, torch.int64, ()).numpy()
        unique_keys, first = np.unique(keys, return_index=True)
        position = np.full(len(keys), -1, dtype=np.int64)
        position[first] = np.arange(len(unique_keys))
        out = {}
        for table, columns in self._columns.items():
            counts = _cat(self._state(table, "count"), torch.int64, ()).numpy()
            if len(counts) != len(keys):
                raise RuntimeError(f"{table}: {len(counts)} row counts for {len(keys)} samples")
            owner = position[np.repeat(np.arange(len(keys)), counts)]
            kept = np.flatnonzero(owner >= 0)
            kept = kept[np.argsort(owner[kept], kind="stable")]
            values = {
                name: _cat(self._state(table, name), dtype, shape).numpy()[kept]
                for name, (dtype, shape) in columns.items()
            }
            out[table] = (owner[kept], values)
        return len(unique_keys), out

    def sync(self, *args: Any, **kwargs: Any) -> None:
        """Give a rank that saw no batch typed empty states, so the gather does not mismatch.

        torchmetrics fills an empty list state with a 1-D tensor of the metric's float dtype,
        which cannot be gathered with the int64 or 2-D states of the other ranks.
        """
        if not self.sample_key:
            self.sample_key.append(torch.zeros(0, dtype=torch.int64, device=self.device))
        for table, columns in self._columns.items():
            specs = {"count": (torch.int64, ()), **columns}
            for name, (dtype, shape) in specs.items():
                state = self._state(table, name)
                if not state:
                    state.append(torch.zeros((0, *shape), dtype=dtype, device=self.device))
        super().sync(*args, **kwargs)

    def _state(self, table: str, name: str) -> list[Tensor]:
        return getattr(self, f"{table}__{name}")


def _cat(state: list[Tensor] | Tensor, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    """A state as one CPU tensor (a list before sync, one tensor after)."""
    if isinstance(state, Tensor):
        return state.cpu()
    if not state:
        return torch.zeros((0, *shape), dtype=dtype)
    return dim_zero_cat(state).cpu()


class TopKAccuracy(SampleMetric):
    """Top-k accuracies (`top1`, `top5`, ...) over clips, each clip counted once under DDP."""

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = tuple(top_k)
        self.add_table("clips", scores=(torch.float32, (num_classes,)), labels=(torch.int64, ()))

    def update(self, scores: Tensor, labels: Tensor, clip_ids: SampleIds) -> None:
        """Add clips: scores `(B, K)` (logits or probabilities), labels `(B,)`."""
        owner = torch.arange(len(labels))
        self.append(clip_ids, {"clips": (owner, {"scores": scores, "labels": labels})})

    def compute(self) -> dict[str, Tensor]:
        _, tables = self.rows()
        _, clips = tables["clips"]
        values = topk_accuracy(clips["scores"], clips["labels"], self.top_k)
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in values.items()}


class EpicAccuracy(SampleMetric):
    """EPIC-KITCHENS-100 verb and noun top-1/top-5 and action top-1 (both right)."""

    def __init__(self, num_verbs: int = 97, num_nouns: int = 300, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_table(
            "clips",
            verb_scores=(torch.float32, (num_verbs,)),
            noun_scores=(torch.float32, (num_nouns,)),
            verb_labels=(torch.int64, ()),
            noun_labels=(torch.int64, ()),
        )

    def update(
        self,
        verb_scores: Tensor,
        noun_scores: Tensor,
        verb_labels: Tensor,
        noun_labels: Tensor,
        clip_ids: SampleIds,
    ) -> None:
        """Add clips: verb scores `(B, 97)`, noun scores `(B, 300)`, labels `(B,)` each."""
        columns = {
            "verb_scores": verb_scores,
            "noun_scores": noun_scores,
            "verb_labels": verb_labels,
            "noun_labels": noun_labels,
        }
        self.append(clip_ids, {"clips": (torch.arange(len(verb_labels)), columns)})

    def compute(self) -> dict[str, Tensor]:
        _, tables = self.rows()
        _, clips = tables["clips"]
        values = {}
        for head in ("verb", "noun"):
            accuracy = topk_accuracy(clips[f"{head}_scores"], clips[f"{head}_labels"])
            values.update({f"{head}_{name}": value for name, value in accuracy.items()})
        values["action_top1"] = action_accuracy(
            clips["verb_scores"], clips["verb_labels"], clips["noun_scores"], clips["noun_labels"]
        )
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in values.items()}


class ExpectedCalibrationError(SampleMetric):
    """ECE over clips with 15 bins by default, each clip counted once under DDP."""

    def __init__(self, num_classes: int, n_bins: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.add_table("clips", probs=(torch.float32, (num_classes,)), labels=(torch.int64, ()))

    def update(self, probs: Tensor, labels: Tensor, clip_ids: SampleIds) -> None:
        """Add clips: probabilities `(B, K)` (softmax of the logits), labels `(B,)`."""
        columns = {"probs": probs, "labels": labels}
        self.append(clip_ids, {"clips": (torch.arange(len(labels)), columns)})

    def compute(self) -> Tensor:
        _, tables = self.rows()
        _, clips = tables["clips"]
        ece = expected_calibration_error(clips["probs"], clips["labels"], self.n_bins)
        return torch.tensor(ece, dtype=torch.float64)


class FrameMAP(SampleMetric):
    """Per-frame mAP over the valid steps of all videos, each video counted once under DDP."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_table(
            "frames",
            scores=(torch.float32, (num_classes,)),
            targets=(torch.bool, (num_classes,)),
        )

    def update(self, scores: Tensor, targets: Tensor, mask: Tensor, video_ids: SampleIds) -> None:
        """Add a batch: scores and targets `(B, K, T)`, mask `(B, T)` true at valid steps.

        Scores may be logits or probabilities (AP only depends on their order). A video cut
        into several windows needs one id per window, e.g. `f"{video}@{t0}"`.
        """
        if scores.ndim != 3 or scores.shape != targets.shape:
            raise ValueError(f"scores {tuple(scores.shape)}, targets {tuple(targets.shape)}")
        if mask.shape != (scores.shape[0], scores.shape[2]):
            raise ValueError(f"mask {tuple(mask.shape)} does not match scores (B, K, T)")
        batch, step = torch.nonzero(mask.bool(), as_tuple=True)
        columns = {
            "scores": scores.detach().transpose(1, 2)[batch, step],
            "targets": targets.transpose(1, 2)[batch, step].bool(),
        }
        self.append(video_ids, {"frames": (batch, columns)})

    def compute(self) -> dict[str, Tensor]:
        _, tables = self.rows()
        _, frames = tables["frames"]
        result = frame_map(frames["scores"], frames["targets"])
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in result.items()}


class SegmentMAP(SampleMetric):
    """Detection mAP at tIoU thresholds over all videos, each video counted once under DDP."""

    def __init__(
        self, num_classes: int, tious: Sequence[float] = ACTIVITYNET_TIOUS, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.tious = tuple(float(t) for t in tious)
        segment = (torch.float64, (2,))
        self.add_table(
            "predictions", segments=segment, scores=(torch.float64, ()), labels=(torch.int64, ())
        )
        self.add_table("ground_truth", segments=segment, labels=(torch.int64, ()))

    def update(
        self,
        preds: Sequence[Mapping[str, Tensor]],
        targets: Sequence[Mapping[str, Tensor]],
        video_ids: SampleIds,
    ) -> None:
        """Add videos: `preds[i]` has `segments (N, 2)` in seconds, `scores (N,)`, `labels (N,)`;
        `targets[i]` has `segments` and `labels` of the ground truth of video `video_ids[i]`."""
        if not len(preds) == len(targets) == len(video_ids):
            raise ValueError("preds, targets and video_ids must have one entry per video")
        self.append(
            video_ids,
            {
                "predictions": _rows(preds, ("segments", "scores", "labels")),
                "ground_truth": _rows(targets, ("segments", "labels")),
            },
        )

    def compute(self) -> dict[str, Tensor]:
        _, tables = self.rows()
        pred_video, pred = tables["predictions"]
        gt_video, gt = tables["ground_truth"]
        ap = segment_average_precision(
            pred_video=pred_video,
            pred_label=pred["labels"],
            pred_segments=pred["segments"],
            pred_scores=pred["scores"],
            gt_video=gt_video,
            gt_label=gt["labels"],
            gt_segments=gt["segments"],
            num_classes=self.num_classes,
            tious=self.tious,
        )
        summary = summarize(ap, self.tious)
        out = {f"mAP@{key}": value for key, value in summary["mAP"].items()}
        out["average_mAP"] = summary["average_mAP"]
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in out.items()}


def _rows(videos: Sequence[Mapping[str, Tensor]], names: tuple[str, ...]) -> tuple[Tensor, dict]:
    """Concatenate per-video dicts into rows, with the batch index of their video as owner."""
    columns = {}
    for name in names:
        row = (2,) if name == "segments" else ()
        parts = [torch.as_tensor(v[name]).detach().cpu().reshape(-1, *row) for v in videos]
        columns[name] = torch.cat(parts) if parts else torch.zeros(0, *row)
    counts = torch.tensor([len(video[names[0]]) for video in videos], dtype=torch.int64)
    owner = torch.repeat_interleave(torch.arange(len(videos)), counts)
    return owner, columns
