"""Radevski et al.'s held-out weighting, fitted by the DistillModule on the validation split
when training starts: the vector equals the softmin of the frozen teachers' mean cross-entropy
on that split, computed here independently, and it is logged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.distill import DistillModule, load_frozen_teacher
from lightning_modules.distillation import EnsembleLogitKD
from lightning_modules.models import ActionModel, ClipHead, VideoCNN
from lightning_modules.tasks import ClipTask
from tests.cli_helpers import CONFIGS, build_cli


def clip_run(bench: Path, runs: Path, *configs: str) -> list[str]:
    """A one-step clip-recognition fit on the tiny benchmark (32x32 frames, no checkpoints)."""
    return [
        "--config", str(CONFIGS / "data/synthetic_clips.yaml"),
        "--config", str(CONFIGS / "trainer/cpu.yaml"),
        *[flag for config in configs for flag in ("--config", str(CONFIGS / config))],
        f"--data.init_args.root={bench}", "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--data.init_args.modalities.rgb.init_args.size=32",
        "--data.init_args.modalities.flow.init_args.size=32",
        "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.enable_checkpointing=false", f"--trainer.default_root_dir={runs}",
    ]  # fmt: skip


def test_held_out_weights_are_fitted_on_the_validation_split(bench: Path, tmp_path: Path) -> None:
    checkpoints = {}
    for name in ("flow", "pose"):
        cli = build_cli(clip_run(bench, tmp_path / name, f"teacher/clips_{name}.yaml"))
        cli.trainer.fit(cli.model, cli.datamodule)
        checkpoints[name] = tmp_path / f"{name}.ckpt"
        cli.trainer.save_checkpoint(checkpoints[name])

    cli = build_cli(
        [
            *clip_run(bench, tmp_path / "student", "distill/clips_radevski.yaml"),
            *[f"--model.init_args.teachers.{n}={p}" for n, p in checkpoints.items()],
            "--model.init_args.objectives=[{class_path: lightning_modules.distillation."
            "EnsembleLogitKD, init_args: {weighting: held_out}}]",
        ]
    )
    objective = cli.model.objectives[0]
    assert objective.needs_held_out_split and objective.weights is None
    cli.trainer.fit(cli.model, cli.datamodule)

    # independently: every teacher over the whole validation split, views folded per clip
    teachers = {name: load_frozen_teacher(path) for name, path in checkpoints.items()}
    losses: dict[str, list[torch.Tensor]] = {name: [] for name in teachers}
    for batch in cli.datamodule.val_dataloader():
        labels = batch["targets"]["clip"]
        for name, teacher in teachers.items():
            with torch.no_grad():
                logits = teacher(batch["inputs"], batch["mask"]).logits
            rows = labels.repeat_interleave(len(logits) // len(labels))
            losses[name].append(F.cross_entropy(logits, rows, reduction="none"))
    mean_ce = torch.tensor([torch.cat(losses[n]).mean().item() for n in teachers])
    expected = dict(zip(teachers, (-mean_ce).softmax(0).tolist(), strict=True))
    assert abs(expected["flow"] - expected["pose"]) > 1e-3  # a swap of the names would show
    assert objective.weights == pytest.approx(expected, abs=1e-6)
    for name, weight in expected.items():
        logged = cli.trainer.callback_metrics[f"held_out/ensemble_kd/{name}"]
        assert logged.item() == pytest.approx(weight, abs=1e-6)


def test_held_out_fit_needs_online_teachers_and_a_validation_split() -> None:
    student = ActionModel(VideoCNN("rgb", 3), ClipHead(128, 8))
    objective = EnsembleLogitKD("held_out")
    cached = DistillModule(student, ClipTask(), {}, [objective], teacher_mode="cached")
    with pytest.raises(ValueError, match="teacher_mode: online"):
        cached.fit_held_out([objective])
