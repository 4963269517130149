"""TorchvisionVideoEncoder: every architecture from a weights file, on the grid for dense and
clip inputs; wrong files refused with the fix; the flow stem; freezing; the backbone's learning
rate in the optimiser's parameter groups."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision.models.video as video_models
from model_inputs import padded_mask

from lightning_modules.models import ActionModel, ClipHead, TorchvisionVideoEncoder, VideoCNN
from lightning_modules.models.torchvision_video import ARCHS
from lightning_modules.tasks import ClipTask
from lightning_modules.teacher import TeacherModule

# MViT is built for 16 frames of 224 x 224: one clip costs seconds on a CPU
ARCH_PARAMS = [pytest.param(a, marks=pytest.mark.slow) if a == "mvit_v2_s" else a for a in ARCHS]
SIZE = 32


def saved_weights(arch: str, folder: Path, seed: int = 0) -> tuple[Path, dict]:
    """torchvision's `arch` with random weights, saved as a user saves the published ones."""
    torch.manual_seed(seed)
    state = getattr(video_models, arch)().state_dict()
    path = folder / f"{arch}.pt"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_each_arch_loads_its_weights_file_and_gives_features_on_the_grid(
    arch: str, tmp_path: Path
) -> None:
    path, state = saved_weights(arch, tmp_path)
    encoder = TorchvisionVideoEncoder(arch, pretrained=str(path)).eval()
    loaded = encoder.backbone.state_dict()
    head = ARCHS[arch].head
    assert not any(k.startswith(f"{head}.") for k in loaded), "the classifier is dropped"
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], msg=key)

    # dense / segment windows: per-step features on the grid, zero at padded steps; MViT's
    # windows of 20 steps are two 16-frame clips
    steps = 20
    batch = 1 if arch == "mvit_v2_s" else 2
    mask = padded_mask(batch, steps, 13)
    inputs = {"rgb": torch.rand(batch, 3, steps, SIZE, SIZE)}
    with torch.no_grad():
        out = encoder(inputs, mask)
    assert out.shape == (batch, ARCHS[arch].channels, steps)
    assert torch.isfinite(out).all()
    assert out[:, :, 0].abs().sum() > 0
    if batch > 1:
        assert (out[1, :, 13:] == 0).all()

    # a clip: 16 frames in, one step of features per frame, whatever the network's stride
    clip = {"rgb": torch.rand(1, 3, 16, SIZE, SIZE)}
    with torch.no_grad():
        features = encoder(clip, torch.ones(1, 16, dtype=torch.bool))
    assert features.shape == (1, encoder.out_channels, 16)


def test_clip_frames_cut_the_window_into_clips_of_the_network() -> None:
    """With `clip_frames`, each clip is encoded alone: its features do not depend on the
    frames of the next clip."""
    torch.manual_seed(0)
    encoder = TorchvisionVideoEncoder("r3d_18", clip_frames=8).eval()
    frames = torch.rand(1, 3, 16, SIZE, SIZE)
    changed = frames.clone()
    changed[:, :, 8:] = torch.rand_like(changed[:, :, 8:])
    mask = torch.ones(1, 16, dtype=torch.bool)
    with torch.no_grad():
        a, b = encoder({"rgb": frames}, mask), encoder({"rgb": changed}, mask)
    torch.testing.assert_close(a[..., :3], b[..., :3])
    assert not torch.allclose(a[..., 12:], b[..., 12:])
    with pytest.raises(ValueError, match="clips of 16 frames"):
        TorchvisionVideoEncoder("mvit_v2_s", clip_frames=8)


def test_a_weights_file_that_does_not_fit_is_refused_with_the_fix(tmp_path: Path) -> None:
    path, _ = saved_weights("r3d_18", tmp_path)
    with pytest.raises(ValueError, match="not a state dict of torchvision's r2plus1d_18") as error:
        TorchvisionVideoEncoder("r2plus1d_18", pretrained=str(path))
    assert str(path) in str(error.value)
    assert "torch.save(torchvision.models.video.r2plus1d_18(weights='KINETICS400_V1')" in str(
        error.value
    )
    missing = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match=r"absent\.pt of s3d does not exist\. Fix: save"):
        TorchvisionVideoEncoder("s3d", pretrained=str(missing))
    checkpoint = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, checkpoint)
    with pytest.raises(ValueError, match="not a state dict of r3d_18"):
        TorchvisionVideoEncoder("r3d_18", pretrained=str(checkpoint))


def test_a_classifier_for_other_classes_is_dropped(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "ssv2.pt"
    torch.save(video_models.r3d_18(num_classes=174).state_dict(), path)
    assert TorchvisionVideoEncoder("r3d_18", pretrained=str(path)).out_channels == 512


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_flow_stem_averages_the_rgb_kernel_over_channels(arch: str, tmp_path: Path) -> None:
    path, state = saved_weights(arch, tmp_path)
    flow = TorchvisionVideoEncoder(arch, modality="flow", in_channels=2, pretrained=str(path))
    stem = flow.backbone.get_submodule(ARCHS[arch].stem)
    rgb = state[f"{ARCHS[arch].stem}.weight"]
    assert stem.in_channels == 2
    expected = rgb.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1, -1)
    torch.testing.assert_close(stem.weight, expected)
    if stem.bias is not None:
        torch.testing.assert_close(stem.bias, state[f"{ARCHS[arch].stem}.bias"])


def test_flow_encoder_runs_and_a_flow_weights_file_loads_as_it_is(tmp_path: Path) -> None:
    torch.manual_seed(0)
    flow = TorchvisionVideoEncoder("r2plus1d_18", modality="flow", in_channels=2).eval()
    out = flow({"flow": torch.randn(2, 2, 12, SIZE, SIZE)}, padded_mask(2, 12, 9))
    assert out.shape == (2, 512, 12)
    path = tmp_path / "flow_network.pt"
    torch.save(flow.backbone.state_dict(), path)
    again = TorchvisionVideoEncoder("r2plus1d_18", "flow", 2, pretrained=str(path))
    for key, value in flow.backbone.state_dict().items():
        torch.testing.assert_close(again.backbone.state_dict()[key], value, msg=key)


def test_frozen_backbone_has_no_trainable_parameter_and_keeps_its_statistics() -> None:
    torch.manual_seed(0)
    encoder = TorchvisionVideoEncoder("r3d_18", freeze=True)
    model = ActionModel(encoder, ClipHead(512, 8))
    module = TeacherModule(model, ClipTask())
    module.train()
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.backbone.training
    before = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    model({"rgb": torch.rand(2, 3, 8, SIZE, SIZE)}, torch.ones(2, 8, dtype=torch.bool))
    for key, value in encoder.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    trainable = {id(p) for p in module.trainable_parameters()}
    assert trainable == {id(p) for p in model.head.parameters()}


def configured_optimiser(module: TeacherModule) -> torch.optim.Optimizer:
    """`configure_optimizers` as a trainer of 10 steps in 2 epochs calls it."""
    module._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=2)
    return module.configure_optimizers()["optimizer"]


def test_backbone_learning_rate_multiplier_shows_in_the_parameter_groups() -> None:
    torch.manual_seed(0)
    encoder = TorchvisionVideoEncoder("r3d_18")
    model = ActionModel(encoder, ClipHead(512, 8))
    module = TeacherModule(model, ClipTask(), lr=0.01, weight_decay=0.1, backbone_lr_multiplier=0.1)
    optimiser = configured_optimiser(module)
    assert isinstance(optimiser, torch.optim.AdamW)
    groups = {g["name"]: g for g in optimiser.param_groups}
    assert groups["other"]["initial_lr"] == pytest.approx(0.01)
    assert groups["backbone"]["initial_lr"] == pytest.approx(0.001)
    assert {g["weight_decay"] for g in groups.values()} == {0.1}
    assert {id(p) for p in groups["backbone"]["params"]} == {
        id(p) for p in encoder.backbone.parameters()
    }
    assert {id(p) for p in groups["other"]["params"]} == {id(p) for p in model.head.parameters()}


def test_default_optimiser_is_adamw_on_one_group_and_the_class_is_configurable() -> None:
    """A model without a pretrained backbone trains as before: AdamW, one group at `lr`."""
    model = ActionModel(VideoCNN(stem_channels=8, widths=(8,), depths=(1,)), ClipHead(8, 8))
    optimiser = configured_optimiser(TeacherModule(model, ClipTask(), lr=0.003))
    assert type(optimiser) is torch.optim.AdamW
    (group,) = optimiser.param_groups
    assert (group["initial_lr"], group["weight_decay"]) == (0.003, 0.05)
    assert len(group["params"]) == len(list(model.parameters()))

    def sgd(params):
        return torch.optim.SGD(params, momentum=0.9)

    optimiser = configured_optimiser(TeacherModule(model, ClipTask(), lr=0.003, optimizer=sgd))
    assert type(optimiser) is torch.optim.SGD
    assert optimiser.param_groups[0]["initial_lr"] == 0.003
    assert optimiser.param_groups[0]["momentum"] == 0.9
