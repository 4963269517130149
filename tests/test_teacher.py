"""TeacherModule through the CLI configs: every teacher config runs, mixed precision, resuming,
test predictions that `crossdistill evaluate` scores exactly as the logged metric, DDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_modules.commands.evaluate import main as evaluate_main
from tests.cli_helpers import build_cli as cli
from tests.cli_helpers import random_backbone_weights
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark, with_random_features

CONFIGS = REPO_ROOT / "configs"
DATA_STACKS = {
    "dense": ["data/synthetic.yaml"],
    "segments": ["data/synthetic.yaml", "data/synthetic_segments.yaml"],
    "clips": ["data/synthetic_clips.yaml"],
}
SMOKE = CONFIGS / "smoke" / "teacher.yaml"
CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_benchmark(tmp_path_factory)


@pytest.fixture(scope="module")
def feature_bench(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_random_features(bench, tmp_path_factory.mktemp("features") / "bench")


def data_stack(config: Path) -> list[str]:
    """The data configs a teacher config is composed after, from its name."""
    if "_features_" in config.stem:
        task = config.stem.split("_")[0]
        extra = ["data/synthetic_features_segments.yaml"] if task == "segments" else []
        return ["data/synthetic_features.yaml", *extra]
    return DATA_STACKS[config.stem.split("_")[0]]


def smoke_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--config", str(SMOKE),
        f"--data.init_args.root={tmp_path / 'synthetic'}",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        *extra,
    ]  # fmt: skip


def teacher_configs() -> list[Path]:
    return sorted((CONFIGS / "teacher").glob("*.yaml"))


@pytest.mark.parametrize("config", teacher_configs(), ids=lambda p: p.stem)
def test_every_teacher_config_trains_one_batch(
    config: Path, bench: Path, feature_bench: Path, tmp_path: Path
) -> None:
    root = feature_bench if "_features_" in config.stem else bench
    args = [a for name in data_stack(config) for a in ("--config", str(CONFIGS / name))]
    built = cli([
        *args, "--config", str(CONFIGS / "trainer" / "cpu.yaml"), "--config", str(config),
        f"--data.init_args.root={root}", "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2", "--trainer.fast_dev_run=1",
        f"--trainer.default_root_dir={tmp_path}", *random_backbone_weights(config, tmp_path),
    ])  # fmt: skip
    before = {k: v.clone() for k, v in built.model.state_dict().items() if v.is_floating_point()}
    built.trainer.fit(built.model, built.datamodule)
    after = built.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "no parameter was updated"
    encoder = built.model.model.encoder
    assert set(built.datamodule.modalities) == set(
        getattr(encoder, "modalities", [encoder.modality])
    )


def test_smoke_config_generates_its_data_and_leaves_a_checkpoint(tmp_path: Path) -> None:
    built = cli(smoke_args(tmp_path))
    assert (tmp_path / "synthetic" / "benchmark.json").is_file()
    built.trainer.fit(built.model, built.datamodule)
    assert list((tmp_path / "runs").rglob("*.ckpt"))
    assert built.trainer.callback_metrics["val/frame_mAP"] > 0


def test_bf16_mixed_precision_trains(tmp_path: Path) -> None:
    built = cli(smoke_args(tmp_path, "--trainer.precision=bf16-mixed", "--trainer.max_epochs=1"))
    built.trainer.fit(built.model, built.datamodule)
    loss = built.trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss)
    assert built.trainer.precision == "bf16-mixed"


def test_resume_continues_epochs_and_optimiser_state(tmp_path: Path) -> None:
    first = cli(smoke_args(tmp_path, "--trainer.max_epochs=1"))
    first.trainer.fit(first.model, first.datamodule)
    checkpoint = next((tmp_path / "runs").rglob("*.ckpt"))
    steps_per_epoch = first.trainer.global_step
    second = cli(smoke_args(tmp_path, "--trainer.max_epochs=2"))
    second.trainer.fit(second.model, second.datamodule, ckpt_path=str(checkpoint))
    assert second.trainer.current_epoch == 2
    assert second.trainer.global_step == 2 * steps_per_epoch
    adam_steps = {
        float(state["step"])
        for state in second.trainer.optimizers[0].state_dict()["state"].values()
    }
    assert adam_steps == {2.0 * steps_per_epoch}, "AdamW moments were not restored"


def test_test_predictions_score_the_same_with_evaluate(tmp_path: Path, capsys) -> None:
    predictions = f"--model.init_args.predictions_dir={tmp_path / 'predictions'}"
    built = cli(smoke_args(tmp_path, "--trainer.max_epochs=1", predictions))
    built.trainer.fit(built.model, built.datamodule)
    logged = built.trainer.test(built.model, built.datamodule)[0]
    capsys.readouterr()
    ground_truth = tmp_path / "synthetic" / "annotations" / "activitynet.json"
    status = evaluate_main([
        "frames", "--ground-truth", str(ground_truth),
        "--predictions", str(tmp_path / "predictions" / "frames.npz"), "--subset", "testing",
    ])  # fmt: skip
    assert status == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["frame_mAP"] == pytest.approx(logged["test/frame_mAP"], abs=1e-6)
    assert scored["frame_mAP_all"] == pytest.approx(logged["test/frame_mAP_all"], abs=1e-6)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """Lightning's own DDP (gloo) through the console script, as a user launches it."""
    args = smoke_args(
        tmp_path, "--trainer.max_epochs=1", "--trainer.devices=2", "--trainer.strategy=ddp"
    )
    result = subprocess.run(
        [CONSOLE_SCRIPT, "fit", *args], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("*.ckpt"))
