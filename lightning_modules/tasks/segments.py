"""Temporal segment detection (THUMOS14, ActivityNet), ActionFormer-style (Zhang et al.,
ECCV 2022): centre-sampled label assignment, sigmoid focal + DIoU losses, decoding to seconds.

Units: a segment `[start_s, end_s]` relative to the window start is `[start_s, end_s] / stride`
in grid steps, and a pyramid point at grid position `p` stands for the step-time `p + 0.5`
(step `i` is the instant `(i + 0.5) * stride`, see `datamodules/grid.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.tasks import SEGMENTS, ClassNames
from lightning_modules.metrics.segment_map import ACTIVITYNET_TIOUS, THUMOS14_TIOUS
from lightning_modules.metrics.streaming import SegmentMAP
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.postprocessing import Detections, soft_nms
from lightning_modules.tasks.base import Task, sample_ids
from lightning_modules.tasks.losses import diou_loss, sigmoid_focal_loss


def default_regression_ranges(levels: int) -> list[tuple[float, float]]:
    """ActionFormer's ranges in grid steps: (0, 4), (4, 8), (8, 16), ..., the last unbounded."""
    ranges = [
        (0.0 if level == 0 else 2.0 ** (level + 1), 2.0 ** (level + 2)) for level in range(levels)
    ]
    ranges[-1] = (ranges[-1][0], float("inf"))
    return ranges


def assign_targets(
    points: Tensor,
    segments: Tensor,
    labels: Tensor,
    num_classes: int,
    ranges: Tensor,
    radius: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """ActionFormer's label assignment for one sample.

    `points (P, 3)` = (grid position, stride, level); `segments (N, 2)` in grid steps;
    `labels (N,)`; `ranges (L, 2)` regression ranges per level in grid steps. A point is a
    candidate for a segment when it lies within `radius * stride` of the segment's centre (and
    inside the segment: centre sampling) and its longer distance to the segment's ends falls in
    its level's range. Among candidates the shortest segment wins; the classes of all equally
    short candidates are positives. Returns class targets `(P, K)`, regression targets
    `(P, 2)` (distances to start and end in units of the point's stride) and positives `(P,)`.
    """
    count = points.shape[0]
    if segments.numel() == 0:
        return (
            points.new_zeros(count, num_classes),
            points.new_zeros(count, 2),
            points.new_zeros(count, dtype=torch.bool),
        )
    centre, stride = points[:, :1] + 0.5, points[:, 1:2]
    low, high = ranges[points[:, 2].long()].unbind(-1)
    start, end = segments[:, 0][None], segments[:, 1][None]
    left, right = centre - start, end - centre  # (P, N)
    middle = (start + end) / 2
    inner_start = torch.maximum(middle - radius * stride, start)
    inner_end = torch.minimum(middle + radius * stride, end)
    in_centre = (centre > inner_start) & (centre < inner_end)
    reach = torch.maximum(left, right)
    in_range = (reach >= low[:, None]) & (reach <= high[:, None])
    length = (end - start).expand(count, -1).masked_fill(~(in_centre & in_range), float("inf"))
    shortest, chosen = length.min(dim=1)
    positive = torch.isfinite(shortest)
    winners = (length <= shortest[:, None]) & positive[:, None]
    classes = (winners.float() @ F.one_hot(labels.long(), num_classes).float()).clamp(max=1.0)
    rows = torch.arange(count, device=points.device)
    distances = torch.stack([left[rows, chosen], right[rows, chosen]], dim=-1) / stride
    return classes, distances * positive[:, None], positive


class SegmentTask(Task):
    """Loss and decoding for `SegmentHead` outputs against `batch["targets"]["segments"]`.

    Targets are a list of `(N_i, 3)` [start_s, end_s, class] relative to the window start;
    `batch["meta"]["stride"]` `(B,)` gives the seconds per grid step. The loss is the sigmoid
    focal loss over valid points plus `regression_weight` times the DIoU loss over positive
    points, both divided by the loss normaliser: as ActionFormer, an exponential moving average
    of the number of positives per training batch (`normaliser_momentum` 0.9, starting at
    `normaliser_init` 100, updated on training steps only, the mean over DDP ranks), so that a
    batch with few actions does not get a huge loss; `normaliser_momentum: 0` divides by the
    batch's own count. `regression_ranges` default to ActionFormer's for the head's number of
    levels.

    Predictions, one dict per sample: `segments (N, 2)` in seconds relative to the window start
    (clipped to its valid steps), `scores (N,)`, `labels (N,)`, what `SegmentMAP` takes, decoded
    as ActionFormer: on each pyramid level the best `pre_nms_topk` candidates above
    `score_threshold`, segments not longer than `min_duration` grid steps dropped, then over all
    levels Gaussian soft-NMS per class (`nms_sigma`; scores decayed below `score_threshold` are
    dropped), at most `max_segments`.

    The metric is `SegmentMAP` at `tious` per evaluation window: a list, or the name of a
    benchmark's official set, `thumos14` (default, 0.3:0.1:0.7) or `activitynet` (0.5:0.05:0.95),
    with the official evaluators' exact `np.linspace` values; with
    whole-video evaluation windows (window length >= the longest video, or `window_seconds:
    null`, where each video has its own stride) that is per video.

    Test predictions: `segments.json` in the ActivityNet results layout, times in seconds from
    the video start.
    """

    main_metric = "average_mAP"
    data = SEGMENTS
    predictions_file = "segments.json"

    def __init__(
        self,
        regression_ranges: Sequence[Sequence[float]] | None = None,
        center_radius: float = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        regression_weight: float = 1.0,
        score_threshold: float = 0.001,
        pre_nms_topk: int = 2000,
        min_duration: float = 0.05,
        nms_sigma: float = 0.5,
        max_segments: int = 200,
        tious: Sequence[float] | Literal["thumos14", "activitynet"] = "thumos14",
        normaliser_momentum: float = 0.9,
        normaliser_init: float = 100.0,
    ) -> None:
        named = {"thumos14": THUMOS14_TIOUS, "activitynet": ACTIVITYNET_TIOUS}
        if isinstance(tious, str) and tious not in named:
            raise ValueError(f"tious {tious!r}: a list of thresholds, or one of {sorted(named)}")
        self.tious = named[tious] if isinstance(tious, str) else tuple(tious)
        self.regression_ranges = regression_ranges
        self.center_radius = center_radius
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.regression_weight = regression_weight
        self.score_threshold = score_threshold
        self.pre_nms_topk, self.min_duration = pre_nms_topk, min_duration
        self.nms_sigma, self.max_segments = nms_sigma, max_segments
        if not 0.0 <= normaliser_momentum < 1.0:
            raise ValueError(f"normaliser_momentum must be in [0, 1), got {normaliser_momentum}")
        self.normaliser_momentum = normaliser_momentum
        self.loss_normaliser = float(normaliser_init)

    def state_dict(self) -> dict[str, float]:
        return {"loss_normaliser": self.loss_normaliser}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.loss_normaliser = float(state.get("loss_normaliser", self.loss_normaliser))

    def normaliser(self, positives: Tensor) -> Tensor:
        """The divisor of both loss terms for a batch with `positives` positive points."""
        count = positives.sum().clamp(min=1).float()
        if self.normaliser_momentum == 0:
            return count
        if torch.is_grad_enabled():  # a training step: move the average (not in evaluation)
            mean = count.detach().clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(mean)
                mean /= dist.get_world_size()
            momentum = self.normaliser_momentum
            self.loss_normaliser = momentum * self.loss_normaliser + (1 - momentum) * mean.item()
        return count.new_tensor(self.loss_normaliser)

    def loss(self, output: ModelOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits = output.logits.float().transpose(1, 2)  # (B, P, K)
        offsets = output.extras["offsets"].float().transpose(1, 2)  # (B, P, 2)
        point_mask = output.extras["point_mask"]
        classes, distances, positive = self.assign(output, batch)
        positive = positive & point_mask
        normaliser = self.normaliser(positive)
        focal = sigmoid_focal_loss(
            logits[point_mask], classes[point_mask], self.focal_alpha, self.focal_gamma
        )
        regression = diou_loss(offsets[positive], distances[positive])
        cls_loss = focal.sum() / normaliser
        reg_loss = regression.sum() / normaliser
        return {
            "loss": cls_loss + self.regression_weight * reg_loss,
            "cls": cls_loss,
            "reg": reg_loss,
        }

    def assign(
        self, output: ModelOutput, batch: Mapping[str, Any]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Every sample's targets, stacked: classes `(B, P, K)`, distances `(B, P, 2)`,
        positives `(B, P)`."""
        points = output.extras["points"]
        levels = int(points[:, 2].max().item()) + 1
        ranges = torch.as_tensor(
            self.regression_ranges or default_regression_ranges(levels),
            dtype=torch.float32,
            device=points.device,
        )
        if ranges.shape != (levels, 2):
            raise ValueError(f"{len(ranges)} regression ranges for a pyramid of {levels} levels")
        stride = torch.as_tensor(batch["meta"]["stride"], dtype=torch.float32).tolist()
        num_classes = output.logits.shape[1]
        per_sample = [
            assign_targets(
                points,
                segments[:, :2].float().to(points.device) / step,
                segments[:, 2].to(points.device),
                num_classes,
                ranges,
                self.center_radius,
            )
            for segments, step in zip(batch["targets"]["segments"], stride, strict=True)
        ]
        classes, distances, positive = zip(*per_sample, strict=True)
        return torch.stack(classes), torch.stack(distances), torch.stack(positive)

    def predict(self, output: ModelOutput, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        scores = torch.sigmoid(output.logits.float()).transpose(1, 2)  # (B, P, K)
        offsets = output.extras["offsets"].float().transpose(1, 2)
        points, point_mask = output.extras["points"], output.extras["point_mask"]
        stride = torch.as_tensor(batch["meta"]["stride"], dtype=torch.float32).tolist()
        return [
            self._decode(
                scores[b][point_mask[b]],
                offsets[b][point_mask[b]],
                points[point_mask[b]],
                output.mask[b],
                stride[b],
            )
            for b in range(scores.shape[0])
        ]

    def _decode(
        self, scores: Tensor, offsets: Tensor, points: Tensor, mask: Tensor, stride: float
    ) -> dict[str, Tensor]:
        """Segments of one sample from its valid points."""
        num_classes = scores.shape[1]
        flat = scores.flatten()
        levels = points[:, 2].repeat_interleave(num_classes)
        chosen = []
        for level in levels.unique():  # the best pre_nms_topk of each pyramid level
            candidates = torch.nonzero((flat > self.score_threshold) & (levels == level))
            candidates = candidates.squeeze(1)
            best = flat[candidates].topk(min(self.pre_nms_topk, len(candidates))).indices
            chosen.append(candidates[best])
        candidates = torch.cat(chosen) if chosen else flat.new_zeros(0, dtype=torch.long)
        point, label = candidates // num_classes, candidates % num_classes
        centre, point_stride = points[point, 0] + 0.5, points[point, 1]
        start = centre - offsets[point, 0] * point_stride  # grid steps
        end = centre + offsets[point, 1] * point_stride
        long_enough = end - start > self.min_duration
        candidates, label = candidates[long_enough], label[long_enough]
        start, end = start[long_enough] * stride, end[long_enough] * stride
        valid = torch.nonzero(mask).squeeze(1)
        first, last = (valid[0].item(), valid[-1].item() + 1) if len(valid) else (0, 0)
        start, end = (
            start.clamp(first * stride, last * stride),
            end.clamp(first * stride, last * stride),
        )
        keep = end > start
        detections = Detections(
            torch.stack([start, end], dim=-1)[keep], flat[candidates][keep], label[keep]
        )
        kept = soft_nms(detections, self.nms_sigma, self.score_threshold, self.max_segments)
        return {"segments": kept.segments, "scores": kept.scores, "labels": kept.labels}

    @staticmethod
    def targets(batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        """Ground truth per sample as `SegmentMAP` takes it: `segments (N, 2)`, `labels (N,)`."""
        return [
            {"segments": segments[:, :2].float(), "labels": segments[:, 2].long()}
            for segments in batch["targets"]["segments"]
        ]

    def metrics(self, num_classes: int) -> nn.ModuleDict:
        return nn.ModuleDict({"segments": SegmentMAP(num_classes, self.tious)})

    def update_metrics(
        self, metrics: nn.ModuleDict, output: ModelOutput, batch: Mapping[str, Any]
    ) -> None:
        predictions = self.predict(output, batch)
        metrics["segments"].update(predictions, self.targets(batch), sample_ids(batch))

    def prediction_row(
        self, predictions: Sequence[Mapping[str, Tensor]], batch: Mapping[str, Any], b: int
    ) -> dict:
        return {k: v.detach().cpu().numpy() for k, v in predictions[b].items()}

    def write_rows(self, rows: Sequence[dict], class_names: ClassNames, path: Path) -> None:
        classes = list(class_names)
        results: dict[str, list[dict]] = {row["video_id"]: [] for row in rows}
        for row in rows:
            for (start, end), score, label in zip(
                row["segments"], row["scores"], row["labels"], strict=True
            ):
                results[row["video_id"]].append({
                    "label": classes[int(label)],
                    "score": float(score),
                    "segment": [float(start + row["t0"]), float(end + row["t0"])],
                })  # fmt: skip
        path.write_text(
            json.dumps({"version": "crossdistill", "results": results, "external_data": {}})
        )
