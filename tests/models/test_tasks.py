"""Tasks: losses against direct computations, label assignment, decoding, view averaging."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.models import ModelOutput
from lightning_modules.models.segment_head import pyramid_points
from lightning_modules.tasks import ClipTask, DenseTask, SegmentTask
from lightning_modules.tasks.clips import average_views
from lightning_modules.tasks.losses import diou_loss, masked_bce, sigmoid_focal_loss
from lightning_modules.tasks.segments import assign_targets, default_regression_ranges


def test_sigmoid_focal_loss_matches_its_definition() -> None:
    logits = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.5, 4.0])
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    alpha, gamma = 0.25, 2.0
    expected = []
    for x, y in zip(logits.tolist(), targets.tolist(), strict=True):
        p = 1 / (1 + math.exp(-x))
        p_t = p if y else 1 - p
        a_t = alpha if y else 1 - alpha
        expected.append(-a_t * (1 - p_t) ** gamma * math.log(p_t))
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha, gamma), torch.tensor(expected)
    )
    # gamma = 0, alpha = 0.5 is half the plain cross-entropy
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, 0.5, 0.0), bce / 2)


def _interval_diou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """DIoU loss of two intervals computed directly from their ends."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    enclosing = max(a[1], b[1]) - min(a[0], b[0])
    centres = (a[0] + a[1]) / 2 - (b[0] + b[1]) / 2
    return 1 - inter / union + (centres / enclosing) ** 2


def test_diou_loss_matches_interval_geometry() -> None:
    point = 10.0
    cases = [
        ((2.0, 3.0), (2.0, 3.0)),
        ((1.0, 4.0), (2.0, 2.0)),
        ((0.5, 6.0), (3.0, 0.2)),
        ((0.0, 1.0), (4.0, 0.0)),
    ]
    pred = torch.tensor([p for p, _ in cases])
    target = torch.tensor([t for _, t in cases])
    expected = [
        _interval_diou((point - p[0], point + p[1]), (point - t[0], point + t[1])) for p, t in cases
    ]
    torch.testing.assert_close(diou_loss(pred, target), torch.tensor(expected))
    assert diou_loss(pred[:1], target[:1]).item() == pytest.approx(0.0, abs=1e-6)


def test_default_ranges_are_actionformers() -> None:
    assert default_regression_ranges(6) == [
        (0, 4),
        (4, 8),
        (8, 16),
        (16, 32),
        (32, 64),
        (64, math.inf),
    ]


def _hand_made() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """16 grid steps of 0.5 s, 3 levels; segments in seconds: A = [2, 5] class 1, and two equal
    shorter ones inside it, B = [3, 4] class 0 and C = [3, 4] class 2."""
    points = pyramid_points([16, 8, 4])
    segments = torch.tensor([[2.0, 5.0, 1], [3.0, 4.0, 0], [3.0, 4.0, 2]])
    return points, segments, torch.tensor(0.5)


def test_centre_sampling_puts_positives_where_expected() -> None:
    """In steps A = [4, 10] (centre 7), B = C = [6, 8].

    Level 0 (stride 1, range 0-4, centre region +-1.5): points at 6 and 7 (instants 6.5,
    7.5) are inside both A's and B/C's centre regions and in range; the shorter B and C win,
    so both classes 0 and 2 are positive there. Level 1 (stride 2, range 4-8, region +-3):
    points at positions 4 and 8 (instants 4.5 and 8.5) reach A's far end at 5.5 and 4.5
    steps, in range; position 6 (reach 3.5) is not. Level 2 (range 8+): nothing reaches 8.
    """
    points, segments, stride = _hand_made()
    ranges = torch.tensor(default_regression_ranges(3))
    classes, distances, positive = assign_targets(
        points, segments[:, :2] / stride, segments[:, 2], 3, ranges, radius=1.5
    )
    assert torch.nonzero(positive).flatten().tolist() == [6, 7, 16 + 2, 16 + 4]
    assert classes[6].tolist() == [1, 0, 1] and classes[7].tolist() == [1, 0, 1]
    assert classes[18].tolist() == [0, 1, 0] and classes[20].tolist() == [0, 1, 0]
    assert classes[~positive].sum() == 0
    torch.testing.assert_close(distances[6], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(distances[7], torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(distances[18], torch.tensor([0.5, 5.5]) / 2)
    torch.testing.assert_close(distances[20], torch.tensor([4.5, 1.5]) / 2)
    # without range limits, centre sampling alone decides: within 1.5 strides of A's centre
    # (step 7) and inside the segment, B/C winning where they are candidates too
    unlimited = torch.tensor([[0.0, math.inf]] * 3)
    near, _, near_positive = assign_targets(
        points, segments[:, :2] / stride, segments[:, 2], 3, unlimited, radius=1.5
    )
    assert torch.nonzero(near_positive).flatten().tolist() == [6, 7, 18, 19, 20, 25, 26]
    assert near[19].tolist() == [1, 0, 1] and near[18].tolist() == near[25].tolist() == [0, 1, 0]
    # a large radius is clipped to the segments: level-0 positives span A = steps 4-10, and
    # only B/C's steps 6-8 take their classes
    wide, _, wide_positive = assign_targets(
        points, segments[:, :2] / stride, segments[:, 2], 3, unlimited, radius=5.0
    )
    assert torch.nonzero(wide_positive[:16]).flatten().tolist() == [4, 5, 6, 7, 8, 9]
    assert wide[4].tolist() == [0, 1, 0] and wide[9].tolist() == [0, 1, 0]
    assert wide[6].tolist() == [1, 0, 1]


def _output_from_targets(points, classes, distances, steps: int) -> ModelOutput:
    """A perfect model's output: confident logits where the targets are, exact offsets."""
    logits = torch.where(classes > 0, 10.0, -10.0).T[None]
    return ModelOutput(
        embeddings=torch.zeros(1, 4, steps),
        logits=logits,
        mask=torch.ones(1, steps, dtype=torch.bool),
        extras={
            "offsets": distances.T[None],
            "points": points,
            "point_mask": torch.ones(1, len(points), dtype=torch.bool),
        },
    )


def test_targets_encoded_as_offsets_decode_back_to_the_segments() -> None:
    points, segments, stride = _hand_made()
    task = SegmentTask(score_threshold=0.5, normaliser_momentum=0.0)  # the batch count
    batch = {"targets": {"segments": [segments]}, "meta": {"stride": stride[None]}}
    output = _output_from_targets(points, *_assign(task, points, segments, stride), steps=16)
    (prediction,) = task.predict(output, batch)
    # 2 points x 2 classes for B/C, 2 points for A; soft-NMS keeps one segment per class
    assert sorted(prediction["labels"].tolist()) == [0, 1, 2]
    for segment, label in zip(prediction["segments"], prediction["labels"], strict=True):
        truth = segments[segments[:, 2] == label][0, :2]
        torch.testing.assert_close(segment, truth)
    # the perfect output has a near-zero loss, and a wrong offset raises it
    assert task.loss(output, batch)["reg"].item() == pytest.approx(0.0, abs=1e-6)
    output.extras["offsets"] = output.extras["offsets"] * 1.5
    assert task.loss(output, batch)["reg"].item() > 0.05


def _assign(task, points, segments, stride):
    ranges = torch.tensor(default_regression_ranges(3))
    classes, distances, _ = assign_targets(
        points, segments[:, :2] / stride, segments[:, 2], 3, ranges, task.center_radius
    )
    return classes, distances


def test_decoding_clips_to_valid_steps_and_skips_padded_points() -> None:
    points = pyramid_points([8, 4])
    logits = torch.full((1, 2, 12), -10.0)
    logits[0, 1, 6] = 10.0  # level 0, position 6: padded below
    logits[0, 0, 2] = 5.0  # level 0, position 2, offsets reaching far past both ends
    offsets = torch.zeros(1, 2, 12)
    offsets[0, :, 2] = torch.tensor([10.0, 10.0])
    mask = torch.tensor([[True] * 5 + [False] * 3])
    output = ModelOutput(
        embeddings=torch.zeros(1, 4, 8),
        logits=logits,
        mask=mask,
        extras={
            "offsets": offsets,
            "points": points,
            "point_mask": torch.cat([mask, mask[:, ::2]], 1),
        },
    )
    (prediction,) = SegmentTask(score_threshold=0.5).predict(output, {"meta": {"stride": [0.25]}})
    assert prediction["labels"].tolist() == [0]
    torch.testing.assert_close(prediction["segments"], torch.tensor([[0.0, 1.25]]))
    torch.testing.assert_close(prediction["scores"], torch.sigmoid(torch.tensor([5.0])))


def test_segment_loss_normalises_by_positives_and_ignores_padded_points() -> None:
    points, segments, stride = _hand_made()
    task = SegmentTask(normaliser_momentum=0.0)  # by the batch's own positives
    batch = {
        "targets": {"segments": [segments, segments[:0]]},
        "meta": {"stride": torch.tensor([0.5, 0.5])},
    }
    torch.manual_seed(0)
    logits = torch.randn(2, 3, len(points))
    point_mask = torch.ones(2, len(points), dtype=torch.bool)
    point_mask[1, 10:16] = False
    output = ModelOutput(
        embeddings=torch.zeros(2, 4, 16),
        logits=logits,
        mask=torch.ones(2, 16, dtype=torch.bool),
        extras={
            "offsets": torch.rand(2, 2, len(points)),
            "points": points,
            "point_mask": point_mask,
        },
    )
    losses = task.loss(output, batch)
    classes, _ = _assign(task, points, segments, stride)
    manual = (
        sigmoid_focal_loss(logits[0].T, classes).sum()
        + sigmoid_focal_loss(
            logits[1].T[point_mask[1]], torch.zeros(int(point_mask[1].sum()), 3)
        ).sum()
    )
    torch.testing.assert_close(losses["cls"], manual / 4)
    output.logits = logits.clone()
    output.logits[1, :, 10:16] = 50.0  # padded points: no effect
    torch.testing.assert_close(task.loss(output, batch)["cls"], losses["cls"])
    with pytest.raises(ValueError, match="regression ranges"):
        SegmentTask(regression_ranges=[(0, 4), (4, 1e9)]).loss(output, batch)


@pytest.mark.parametrize("reduction", ["pdan", "mean"])
def test_dense_loss_is_masked_bce_summed_over_stages(reduction: str) -> None:
    """`pdan`: summed over classes, averaged over valid steps (the authors' training loss)."""
    torch.manual_seed(0)
    stage_logits = torch.randn(2, 2, 3, 6)
    targets = torch.rand(2, 6, 3) > 0.5  # (B, T, K)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    output = ModelOutput(
        embeddings=torch.zeros(2, 4, 6),
        logits=stage_logits[-1],
        mask=mask,
        extras={"stage_logits": stage_logits},
    )
    batch = {"targets": {"frames": targets}}
    loss = DenseTask(reduction).loss(output, batch)["loss"]
    expected = 0.0
    for logits in stage_logits:
        terms = [
            torch.nn.functional.binary_cross_entropy_with_logits(
                logits[b, k, t], targets[b, t, k].float()
            )
            for b in range(2)
            for t in range(6)
            for k in range(3)
            if mask[b, t]
        ]
        per_class = 3 if reduction == "pdan" else 1
        expected = expected + torch.stack(terms).mean() * per_class
    torch.testing.assert_close(loss, expected)
    assert (
        masked_bce(stage_logits[0], targets.transpose(1, 2), torch.zeros(2, 6, dtype=torch.bool))
        == 0
    )
    torch.testing.assert_close(DenseTask().predict(output, batch), torch.sigmoid(stage_logits[-1]))


def test_clip_views_are_averaged_before_loss_and_prediction() -> None:
    torch.manual_seed(0)
    views = {"verb": torch.randn(6, 4), "noun": torch.randn(6, 5)}  # 2 samples x 3 views
    targets = {"verb": torch.tensor([1, 3]), "noun": torch.tensor([0, 4])}
    output = ModelOutput(
        embeddings=torch.zeros(6, 8, 2), logits=views, mask=torch.ones(6, 2, dtype=torch.bool)
    )
    batch = {"targets": {"clip": targets}}
    losses = ClipTask().loss(output, batch)
    averaged = {name: value.view(2, 3, -1).mean(1) for name, value in views.items()}
    parts = {
        name: torch.nn.functional.cross_entropy(averaged[name], targets[name]) for name in views
    }
    torch.testing.assert_close(losses["verb"], parts["verb"])
    torch.testing.assert_close(losses["loss"], (parts["verb"] + parts["noun"]) / 2)
    prediction = ClipTask().predict(output, batch)
    torch.testing.assert_close(prediction["noun"], averaged["noun"].softmax(-1))

    single = ModelOutput(
        embeddings=torch.zeros(2, 8, 2),
        logits=views["verb"][:2],
        mask=torch.ones(2, 2, dtype=torch.bool),
    )
    loss = ClipTask().loss(single, {"targets": {"clip": targets["verb"]}})
    assert set(loss) == {"loss"}
    torch.testing.assert_close(
        loss["loss"], torch.nn.functional.cross_entropy(views["verb"][:2], targets["verb"])
    )
    with pytest.raises(ValueError, match="heads"):
        ClipTask().loss(output, {"targets": {"clip": targets["verb"]}})
    with pytest.raises(ValueError, match="views"):
        average_views(torch.randn(5, 3), 2)


def test_segment_loss_normaliser_is_actionformers_moving_average_of_positives() -> None:
    """Init 100, momentum 0.9, moved by training steps only, kept in checkpoints."""
    points, segments, stride = _hand_made()
    batch = {"targets": {"segments": [segments]}, "meta": {"stride": stride[None]}}
    output = _output_from_targets(points, *_assign(SegmentTask(), points, segments, stride), 16)
    by_count = SegmentTask(normaliser_momentum=0.0).loss(output, batch)["cls"]
    positives = int(SegmentTask().assign(output, batch)[2].sum())
    task = SegmentTask()
    first = task.loss(output, batch)["cls"]
    assert task.loss_normaliser == pytest.approx(0.9 * 100 + 0.1 * positives)
    torch.testing.assert_close(first, by_count * positives / task.loss_normaliser)
    task.loss(output, batch)
    expected = 0.9 * (0.9 * 100 + 0.1 * positives) + 0.1 * positives
    assert task.loss_normaliser == pytest.approx(expected)
    with torch.no_grad():  # validation leaves it alone
        task.loss(output, batch)
    assert task.loss_normaliser == pytest.approx(expected)
    restored = SegmentTask()
    restored.load_state_dict(task.state_dict())
    assert restored.loss_normaliser == task.loss_normaliser


def test_decoding_takes_the_top_k_of_each_level_and_drops_too_short_segments() -> None:
    points = pyramid_points([8, 4])  # level 0: 8 points, level 1: 4
    logits = torch.full((1, 1, 12), -10.0)
    logits[0, 0, :8] = torch.linspace(3.0, 4.0, 8)  # level 0 scores higher than level 1
    logits[0, 0, 8:] = torch.linspace(1.0, 2.0, 4)
    offsets = torch.ones(1, 2, 12)
    offsets[0, :, 7] = 0.01  # the best point of level 0: a segment of 0.02 steps
    output = ModelOutput(
        embeddings=torch.zeros(1, 4, 8),
        logits=logits,
        mask=torch.ones(1, 8, dtype=torch.bool),
        extras={"offsets": offsets, "points": points, "point_mask": torch.ones(1, 12).bool()},
    )
    task = SegmentTask(pre_nms_topk=2, nms_sigma=1e6, score_threshold=1e-4, max_segments=10)
    (prediction,) = task.predict(output, {"meta": {"stride": torch.tensor([1.0])}})
    kept = sorted(round(float(s), 4) for s in prediction["scores"])
    level0 = torch.sigmoid(logits[0, 0, 6]).item()  # 7 is too short, 6 is next of the top 2
    level1 = torch.sigmoid(logits[0, 0, 10:12]).tolist()  # its own top 2, however low
    assert round(level0, 4) in kept and all(round(s, 4) in kept for s in level1)
    assert round(torch.sigmoid(logits[0, 0, 7]).item(), 4) not in kept
