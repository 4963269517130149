"""Radevski et al.'s held-out weighting, fitted by the DistillModule when training starts on
the part of the training videos that its teachers were trained without: the vector equals the
softmin of the frozen teachers' mean cross-entropy on that part, computed here independently,
and it is logged; a teacher that trained on those videos is refused."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.distill import DistillModule
from lightning_modules.distillation import EnsembleLogitKD
from lightning_modules.models import ActionModel, ClipHead, VideoCNN
from lightning_modules.tasks import ClipTask
from lightning_modules.teachers import Cached, load_frozen_teacher
from tests.cli_helpers import CONSOLE_SCRIPT, build_cli, clip_run

HELD_OUT = "--data.init_args.held_out_fraction=0.25"
HELD_OUT_KD = (
    "--model.init_args.objectives={ensemble_kd: {class_path: "
    "lightning_modules.distillation.EnsembleLogitKD, init_args: {weighting: held_out}}}"
)


def train_teacher(bench: Path, runs: Path, name: str, *flags: str) -> Path:
    cli = build_cli([*clip_run(bench, runs, f"teacher/clips_{name}.yaml"), *flags])
    cli.trainer.fit(cli.model, cli.datamodule)
    checkpoint = runs / f"{name}.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    return checkpoint


def student(bench: Path, runs: Path, checkpoints: dict[str, Path]) -> Any:
    return build_cli(
        [
            *clip_run(bench, runs, "teacher/clips_rgb.yaml", "distill/clips_radevski.yaml"),
            *[f"--model.init_args.teachers.{n}={p}" for n, p in checkpoints.items()],
            HELD_OUT_KD,
            HELD_OUT,
        ]
    )


def softmin_of_mean_ce(checkpoints: dict[str, Path], loader: Any) -> dict[str, float]:
    """Independently: every teacher over a whole loader, views folded per clip, then the
    softmin over teachers of their mean cross-entropy."""
    teachers = {name: load_frozen_teacher(path) for name, path in checkpoints.items()}
    losses: dict[str, list[torch.Tensor]] = {name: [] for name in teachers}
    for batch in loader:
        labels = batch["targets"]["clip"]
        for name, teacher in teachers.items():
            with torch.no_grad():
                logits = teacher(batch["inputs"], batch["mask"]).logits
            rows = labels.repeat_interleave(len(logits) // len(labels))
            losses[name].append(F.cross_entropy(logits, rows, reduction="none"))
    mean_ce = torch.tensor([torch.cat(losses[n]).mean().item() for n in teachers])
    return dict(zip(teachers, (-mean_ce).softmax(0).tolist(), strict=True))


def test_held_out_weights_are_fitted_on_the_held_out_training_videos(
    bench: Path, tmp_path: Path
) -> None:
    checkpoints = {
        name: train_teacher(bench, tmp_path, name, HELD_OUT) for name in ("flow", "pose")
    }
    cli = student(bench, tmp_path / "student", checkpoints)
    objective = cli.model.objectives["ensemble_kd"]
    assert objective.needs_held_out_split and objective.weights is None
    assert set(cli.model.teacher_held_out_digests.values()) == {cli.datamodule.held_out_digest}
    cli.trainer.fit(cli.model, cli.datamodule)

    held_ids = {v for b in cli.datamodule.held_out_dataloader() for v in b["meta"]["video_id"]}
    trained_ids = {
        record.video_id for record, _, _ in cli.datamodule.datasets["train"].sampler.clips
    }
    assert held_ids and held_ids <= trained_ids  # the student trains on every training video
    expected = softmin_of_mean_ce(checkpoints, cli.datamodule.held_out_dataloader())
    assert abs(expected["flow"] - expected["pose"]) > 1e-3  # a swap of the names would show
    assert objective.weights == pytest.approx(expected, abs=1e-6)
    for name, weight in expected.items():
        logged = cli.trainer.callback_metrics[f"held_out/ensemble_kd/{name}"]
        assert logged.item() == pytest.approx(weight, abs=1e-6)


def test_a_teacher_trained_on_the_held_out_videos_is_refused(bench: Path, tmp_path: Path) -> None:
    checkpoints = {
        "flow": train_teacher(bench, tmp_path, "flow", HELD_OUT),
        "pose": train_teacher(bench, tmp_path, "pose"),  # trained on every training video
    }
    cli = student(bench, tmp_path / "student", checkpoints)
    with pytest.raises(ValueError, match=r"teachers \['pose \(.*pose.ckpt\)'\] were not trained"):
        cli.trainer.fit(cli.model, cli.datamodule)


@pytest.mark.slow
def test_held_out_fit_under_ddp_sums_the_shards_of_both_ranks(bench: Path, tmp_path: Path) -> None:
    """Two CPU processes each see part of the held-out clips; the fitted vector (logged by rank
    0) is the one of all of them, as on one process."""
    checkpoints = {
        name: train_teacher(bench, tmp_path, name, HELD_OUT) for name in ("flow", "pose")
    }
    cli = student(bench, tmp_path / "one", checkpoints)
    cli.datamodule.setup("fit")
    loader = cli.datamodule.held_out_dataloader()
    assert len(loader.dataset) >= 2  # each rank gets some of the clips
    expected = softmin_of_mean_ce(checkpoints, loader)
    flags = clip_run(
        bench, tmp_path / "ddp", "teacher/clips_rgb.yaml", "distill/clips_radevski.yaml"
    )
    flags = [f for f in flags if not f.startswith("--trainer.default_root_dir")]
    result = subprocess.run(
        [CONSOLE_SCRIPT, "fit", *flags, HELD_OUT_KD, HELD_OUT,
         *[f"--model.init_args.teachers.{n}={p}" for n, p in checkpoints.items()],
         "--trainer.devices=2", "--trainer.strategy=ddp", f"--trainer.default_root_dir={tmp_path}",
         "--run_name=ddp"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "ddp" / "metrics.csv").open()))
    logged = {
        name: float(
            next(
                r[f"held_out/ensemble_kd/{name}"]
                for r in rows
                if r.get(f"held_out/ensemble_kd/{name}")
            )
        )
        for name in expected
    }
    assert logged == pytest.approx(expected, abs=1e-5)


def test_held_out_fit_needs_online_teachers() -> None:
    student = ActionModel(VideoCNN("rgb", 3), ClipHead(128, 8))
    objective = EnsembleLogitKD("held_out")
    objectives = {"ensemble_kd": objective}
    cached = DistillModule(student, ClipTask(), {}, objectives, teacher_source=Cached())
    with pytest.raises(ValueError, match=r"teacher_source: lightning_modules\.teachers\.Online"):
        cached.fit_held_out([objective])
