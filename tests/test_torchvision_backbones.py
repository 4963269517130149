"""A standard pretrained backbone end to end: configs/distill/clips_r2plus1d_radevski.yaml after
its baseline, with torchvision's R(2+1)D-18 as flow teacher and RGB student, each from random
weights saved to a file (as a user saves the published Kinetics-400 ones)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lightning_modules.distill import DistillModule
from lightning_modules.models import TorchvisionVideoEncoder
from tests.cli_helpers import CONFIGS, build_cli, clip_run, random_backbone_weights


@pytest.mark.slow
def test_r2plus1d_student_distils_one_epoch_from_a_pretrained_flow_teacher(
    bench: Path, tmp_path: Path
) -> None:
    """The flow teacher trains one step, then its weights file is removed: the checkpoint holds
    its weights, so loading it as a teacher reads no other file. The student then distils one
    epoch on the tiny benchmark; its backbone learns at a tenth of the head's rate (the config's
    backbone_lr_multiplier) and its first convolution moves."""
    teacher_config = CONFIGS / "teacher" / "clips_r2plus1d_flow.yaml"
    teacher_weights = tmp_path / "teacher_weights"
    teacher_weights.mkdir()
    built = build_cli([
        *clip_run(bench, tmp_path / "teacher", "teacher/clips_r2plus1d_flow.yaml"),
        *random_backbone_weights(teacher_config, teacher_weights),
    ])  # fmt: skip
    built.trainer.fit(built.model, built.datamodule)
    checkpoint = tmp_path / "flow.ckpt"
    built.trainer.save_checkpoint(checkpoint)
    shutil.rmtree(teacher_weights)

    student_weights = tmp_path / "student_weights"
    student_weights.mkdir()
    configs = ("teacher/clips_r2plus1d_rgb.yaml", "distill/clips_r2plus1d_radevski.yaml")
    built = build_cli([
        *clip_run(bench, tmp_path / "student", *configs),
        *random_backbone_weights(CONFIGS / configs[0], student_weights),
        f"--model.init_args.teachers.flow={checkpoint}",
        "--trainer.max_steps=-1", "--trainer.max_epochs=1",
    ])  # fmt: skip
    module: DistillModule = built.model
    encoder = module.model.encoder
    assert isinstance(encoder, TorchvisionVideoEncoder)
    assert isinstance(module.teachers["flow"].encoder, TorchvisionVideoEncoder)
    stem = encoder.backbone.stem[0].weight.detach().clone()
    built.trainer.fit(module, built.datamodule)

    assert built.trainer.global_step > 1, "one epoch of several steps"
    for name in ("train/task", "train/ensemble_kd", "train/loss"):
        assert torch.isfinite(built.trainer.callback_metrics[name]), name
    groups = {g["name"]: g for g in built.trainer.optimizers[0].param_groups}
    assert groups["backbone"]["initial_lr"] == pytest.approx(0.1 * groups["other"]["initial_lr"])
    assert not torch.equal(encoder.backbone.stem[0].weight, stem)
