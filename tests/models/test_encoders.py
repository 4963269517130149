"""Modality encoders: grid shapes, padding, skeleton equivariance, box masks, weights files."""

from __future__ import annotations

import pytest
import torch
from model_inputs import NUM_JOINTS, padded_mask, random_inputs

from lightning_modules.models import (
    BoxLayoutTransformer,
    FeatureProjection,
    KeypointGCN,
    VideoCNN,
    VideoTransformer,
)
from lightning_modules.models.keypoints import skeleton_partitions
from lightning_modules.models.layers import resample_mask, resample_time

BATCH, STEPS, VALID = 2, 16, 11
TIME_DIMS = {"rgb": 2, "flow": 2, "pose": 1, "boxes": 1, "features": 2}


def encoders(bones) -> dict[str, torch.nn.Module]:
    return {
        "video_cnn": VideoCNN(stem_channels=8, widths=(8, 16), depths=(1, 1)),
        "flow_cnn": VideoCNN(
            modality="flow", in_channels=2, stem_channels=8, widths=(8, 16), depths=(1, 1)
        ),
        "video_transformer": VideoTransformer(image_size=32, dim=32, heads=2),
        "keypoints": KeypointGCN(NUM_JOINTS, bones, channels=(16, 16)),
        "boxes": BoxLayoutTransformer(dim=32, heads=2),
        "features": FeatureProjection(24, 32),
    }


@pytest.mark.parametrize(
    "name",
    ["video_cnn", "flow_cnn", "video_transformer", "keypoints", "boxes", "features"],
)
def test_encoder_output_on_grid_and_padding_ignored(name: str, bones) -> None:
    """(B, C, T) on the mask's grid, zero at padded steps, and (in eval mode) the content of
    padded steps does not change any valid output."""
    torch.manual_seed(0)
    encoder = encoders(bones)[name].eval()
    inputs = random_inputs(BATCH, STEPS)
    mask = padded_mask(BATCH, STEPS, VALID)
    out = encoder(inputs, mask)
    assert out.shape == (BATCH, encoder.out_channels, STEPS)
    assert torch.isfinite(out).all()
    assert (out[1, :, VALID:] == 0).all()
    assert out[1, :, :VALID].abs().sum() > 0

    noisy = {k: v.clone() for k, v in inputs.items()}
    for key, time_dim in TIME_DIMS.items():
        garbage = noisy[key].narrow(time_dim, VALID, STEPS - VALID)
        garbage[1] = torch.randn_like(garbage[1]) * 50
    noisy["boxes"][1, VALID:, :, 4] = 3
    noisy["boxes_mask"][1, VALID:] = True
    torch.testing.assert_close(encoder(noisy, mask)[1, :, :VALID], out[1, :, :VALID])


@pytest.mark.parametrize("name", ["video_transformer", "boxes", "features"])
def test_attention_encoders_on_a_padded_window_match_the_unpadded_sequence(
    name: str, bones
) -> None:
    """Encoders without temporal convolutions leave padded steps out of every attention: valid
    steps get exactly what the bare sequence gives."""
    torch.manual_seed(0)
    encoder = encoders(bones)[name].eval()
    inputs = random_inputs(BATCH, STEPS)
    bare = {key: value[1:].narrow(TIME_DIMS.get(key, 1), 0, VALID) for key, value in inputs.items()}
    short = encoder(bare, torch.ones(1, VALID, dtype=torch.bool))
    padded = encoder(inputs, padded_mask(BATCH, STEPS, VALID))[1:, :, :VALID]
    torch.testing.assert_close(padded, short)


def test_video_with_more_frames_than_steps_comes_back_on_the_grid() -> None:
    """Two frames per step (e.g. 20 fps video on a 10 fps grid): the output has T steps."""
    encoder = VideoCNN(stem_channels=8, widths=(8,), depths=(1,)).eval()
    inputs = {"rgb": torch.randn(2, 3, 2 * STEPS, 16, 16)}
    mask = padded_mask(2, STEPS, VALID)
    out = encoder(inputs, mask)
    assert out.shape == (2, 8, STEPS)
    assert (out[1, :, VALID:] == 0).all() and out[1, :, VALID - 1].abs().sum() > 0


def test_resampling_helpers() -> None:
    x = torch.arange(8.0).view(1, 1, 8)
    torch.testing.assert_close(resample_time(x, 4), torch.tensor([[[0.5, 2.5, 4.5, 6.5]]]))
    assert resample_time(x, 16).shape == (1, 1, 16)
    mask = torch.tensor([[True, True, False]])
    assert resample_mask(mask, 6).tolist() == [[True, True, True, True, False, False]]


def test_video_transformer_tubelets_cover_odd_lengths() -> None:
    encoder = VideoTransformer(image_size=32, dim=32, heads=2, tubelet=2).eval()
    inputs = {"rgb": torch.randn(2, 3, 15, 32, 32)}
    out = encoder(inputs, torch.ones(2, 15, dtype=torch.bool))
    assert out.shape == (2, 32, 15)
    torch.testing.assert_close(out[..., 0], out[..., 1])  # one tubelet, two frames


def test_skeleton_partitions_follow_the_bones(bones) -> None:
    parts = skeleton_partitions(NUM_JOINTS, bones)
    assert parts.shape == (2, NUM_JOINTS, NUM_JOINTS)
    assert torch.count_nonzero(parts[0] - torch.diag(torch.diag(parts[0]))) == 0
    edges = {tuple(sorted(map(int, pair))) for pair in torch.nonzero(parts[1])}
    assert edges == {tuple(sorted(bone)) for bone in bones}
    torch.testing.assert_close(parts.sum(0), parts.sum(0).T)
    with pytest.raises(ValueError, match="bone"):
        skeleton_partitions(3, [(0, 3)])


def test_gcn_is_equivariant_to_relabelling_joints_with_the_bones(bones) -> None:
    """Permute joints and the bone list alike (and the learned edge masks): per-joint features
    permute the same way, and the pooled encoder output does not change."""
    torch.manual_seed(0)
    permutation = torch.randperm(NUM_JOINTS)  # new joint j is old joint permutation[j]
    new_index = torch.argsort(permutation)
    new_bones = [(int(new_index[a]), int(new_index[b])) for a, b in bones]
    model = KeypointGCN(NUM_JOINTS, bones, channels=(16, 16)).eval()
    for block in model.blocks:  # make the edge masks non-trivial, so they must be permuted too
        block.edge_importance.data.uniform_(0.5, 1.5)
    relabelled = KeypointGCN(NUM_JOINTS, new_bones, channels=(16, 16)).eval()
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("partitions", "edge_importance")):
            state[key] = value[:, permutation][:, :, permutation]
    relabelled.load_state_dict(state)
    torch.testing.assert_close(
        relabelled.blocks[0].partitions, skeleton_partitions(NUM_JOINTS, new_bones)
    )

    inputs = random_inputs(BATCH, STEPS)
    mask = padded_mask(BATCH, STEPS, VALID)
    per_joint = model.per_joint(inputs["pose"], mask)
    permuted = relabelled.per_joint(inputs["pose"][:, :, permutation], mask)
    torch.testing.assert_close(permuted, per_joint[..., permutation])
    torch.testing.assert_close(
        relabelled({"pose": inputs["pose"][:, :, permutation]}, mask), model(inputs, mask)
    )
    # and a relabelling that ignores the bones does change the features
    wrong = model.per_joint(inputs["pose"][:, :, permutation], mask)
    assert not torch.allclose(wrong, per_joint[..., permutation], atol=1e-3)


def test_gcn_uses_confidence_and_ignores_dropped_joint_coordinates(bones) -> None:
    """A dropped joint (confidence 0) contributes nothing, whatever its coordinates."""
    model = KeypointGCN(NUM_JOINTS, bones, channels=(16,)).eval()
    inputs = random_inputs(BATCH, STEPS)
    mask = torch.ones(BATCH, STEPS, dtype=torch.bool)
    pose = inputs["pose"].clone()
    pose[:, 3, 4] = torch.tensor([0.0, 0.0, 0.0])
    moved = pose.clone()
    moved[:, 3, 4, :2] = 1000.0
    torch.testing.assert_close(model({"pose": moved}, mask), model({"pose": pose}, mask))
    shifted = pose.clone()
    shifted[..., :2] = shifted[..., :2] * 2 + 7  # per-sample normalisation: scale and offset
    shifted[:, 3, 4] = 0.0
    torch.testing.assert_close(model({"pose": shifted}, mask), model({"pose": pose}, mask))


def test_box_transformer_ignores_masked_boxes() -> None:
    """A masked box changes nothing, whatever it holds: the output is what it is without it."""
    torch.manual_seed(0)
    model = BoxLayoutTransformer(dim=32, heads=2).eval()
    inputs = random_inputs(BATCH, STEPS)
    mask = torch.ones(BATCH, STEPS, dtype=torch.bool)
    inputs["boxes_mask"][..., -1] = False  # the last box slot is padding in every frame
    without = {"boxes": inputs["boxes"][:, :, :-1], "boxes_mask": inputs["boxes_mask"][:, :, :-1]}
    out = model(inputs, mask)
    torch.testing.assert_close(out, model(without, mask))

    hidden = ~inputs["boxes_mask"]
    changed = dict(inputs)
    changed["boxes"] = inputs["boxes"].clone()
    changed["boxes"][hidden] = torch.randn(int(hidden.sum()), 6) * 100
    changed["boxes"][..., 4][hidden] = 99.0  # not even a valid category
    torch.testing.assert_close(model(changed, mask), out)
    # an unmasked box does matter
    shown = dict(inputs)
    shown["boxes_mask"] = torch.ones_like(inputs["boxes_mask"])
    assert not torch.allclose(model(shown, mask), out, atol=1e-4)


def test_box_transformer_sees_box_position_at_init() -> None:
    """Moving a real box changes the output comparably to relabelling it, from the start.

    Raw 0-1 coordinates through a linear layer made position a sliver of each token next to
    the category embedding (ratio about 0.13) and the object teacher stayed at chance; the
    scaled coordinate MLP with a normed token is near 1.
    """
    ratios = []
    for seed in range(5):
        torch.manual_seed(seed)
        model = BoxLayoutTransformer(dim=32, heads=2).eval()
        inputs = random_inputs(BATCH, STEPS)
        mask = torch.ones(BATCH, STEPS, dtype=torch.bool)
        inputs["boxes_mask"][0, :, 0] = True
        inputs["boxes"][0, :, 0, :5] = torch.tensor([0.1, 0.1, 0.3, 0.4, 0.0])
        moved, relabelled = inputs["boxes"].clone(), inputs["boxes"].clone()
        moved[0, :, 0, [0, 2]] += 0.5
        relabelled[0, :, 0, 4] = 1.0
        with torch.no_grad():
            out = model(inputs, mask)[0]
            by_move = (model({**inputs, "boxes": moved}, mask)[0] - out).norm()
            by_label = (model({**inputs, "boxes": relabelled}, mask)[0] - out).norm()
        ratios.append((by_move / by_label).item())
    assert sum(ratios) / len(ratios) > 0.5, ratios


def test_box_transformer_handles_frames_without_boxes() -> None:
    model = BoxLayoutTransformer(dim=32, heads=2)
    inputs = random_inputs(BATCH, STEPS)
    inputs["boxes_mask"] = torch.zeros_like(inputs["boxes_mask"])
    out = model(inputs, torch.ones(BATCH, STEPS, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_feature_projection_reads_a_channel_range() -> None:
    """A student and a teacher can read the two halves of one two-stream feature tensor."""
    rgb = FeatureProjection(12, 8, channels=(0, 12))
    flow = FeatureProjection(12, 8, channels=(12, 24))
    flow.load_state_dict(rgb.state_dict())
    features = torch.randn(2, 24, 5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    halves = {"features": torch.cat([features[:, 12:], features[:, :12]], dim=1)}
    torch.testing.assert_close(flow(halves, mask), rgb({"features": features}, mask))
    with pytest.raises(ValueError, match="range"):
        FeatureProjection(12, 8, channels=(0, 10))


@pytest.mark.parametrize("cls", [VideoCNN, VideoTransformer])
def test_video_encoders_load_pretrained_weights(cls, tmp_path) -> None:
    kwargs = {"image_size": 32, "dim": 32, "heads": 2} if cls is VideoTransformer else {}
    source = cls(**kwargs)
    path = tmp_path / "encoder.pt"
    torch.save(source.state_dict(), path)
    loaded = cls(**kwargs, pretrained=str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    other = (
        {"image_size": 32, "dim": 64, "heads": 2}
        if cls is VideoTransformer
        else {"widths": (8,), "depths": (1,)}
    )
    with pytest.raises(RuntimeError, match="not a state dict"):
        cls(**other, pretrained=str(path))


@pytest.mark.parametrize(
    "name",
    ["video_cnn", "video_transformer", "keypoints", "boxes", "features"],
)
def test_gradients_reach_every_encoder_parameter(name: str, bones) -> None:
    torch.manual_seed(0)
    encoder = encoders(bones)[name].train()
    inputs = random_inputs(BATCH, STEPS)
    out = encoder(inputs, padded_mask(BATCH, STEPS, VALID))
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_early_fusion_concatenates_each_modality_encoder() -> None:
    from lightning_modules.models import EarlyFusion, FeatureProjection

    rgb, flow = FeatureProjection(6, 4, modality="rgb"), FeatureProjection(5, 3, modality="flow")
    fusion = EarlyFusion([rgb, flow])
    inputs = {"rgb": torch.randn(2, 6, 10), "flow": torch.randn(2, 5, 10)}
    mask = torch.ones(2, 10, dtype=torch.bool)
    fused = fusion(inputs, mask)
    assert fusion.out_channels == 7 and fusion.modalities == ["rgb", "flow"]
    torch.testing.assert_close(fused, torch.cat([rgb(inputs, mask), flow(inputs, mask)], dim=1))
    with pytest.raises(ValueError, match="different modality"):
        EarlyFusion([rgb, FeatureProjection(6, 4, modality="rgb")])
