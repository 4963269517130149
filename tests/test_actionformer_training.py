"""ActionFormer's training loop (configs/trainer/actionformer.yaml): gradient clip 1.0 and an
EMA of the weights through Lightning's own `EMAWeightAveraging`, whose averaged weights are
what the checkpoints hold and `test` scores, and which resumes from `last.ckpt`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.commands import main
from tests.cli_helpers import CONFIGS, FEATURES, print_config, quiet_features_run
from tests.data_helpers import tiny_benchmark, with_random_features

SEGMENTS = [
    *FEATURES,
    "--config", str(CONFIGS / "data" / "synthetic_features_segments.yaml"),
    "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
    "--config", str(CONFIGS / "teacher" / "segments_features_rgb.yaml"),
    "--config", str(CONFIGS / "trainer" / "actionformer.yaml"),
]  # fmt: skip


@pytest.fixture(scope="module")
def feature_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench = tiny_benchmark(tmp_path_factory)
    return with_random_features(bench, tmp_path_factory.mktemp("actionformer") / "bench")


def test_config_clips_at_one_and_averages(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = print_config(capsys, *SEGMENTS)["trainer"]
    assert trainer["gradient_clip_val"] == 1.0
    (ema,) = [c for c in trainer["callbacks"] if c["class_path"].endswith("EMAWeightAveraging")]
    assert ema["init_args"]["decay"] == 0.999


def test_checkpoints_hold_the_averaged_weights_and_resume(
    feature_bench: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    run = [*SEGMENTS, *quiet_features_run(feature_bench, runs), "--run_name=a"]
    assert main(["fit", *run, "--trainer.max_epochs=2"]) == 0
    last = torch.load(runs / "a/checkpoints/last.ckpt", weights_only=False)
    averaged, current = last["state_dict"], last["current_model_state"]
    assert averaged.keys() == current.keys()
    moved = [k for k in averaged if not torch.equal(averaged[k], current[k])]
    assert moved  # the averaged weights are not the raw ones
    resume = ["--config", str(runs / "a/config.yaml"), "--ckpt_path", "last"]
    assert main(["fit", *resume, "--trainer.max_epochs=3"]) == 0
    assert torch.load(runs / "a/checkpoints/last.ckpt", weights_only=False)["epoch"] == 2
    assert main(["test", "--config", str(runs / "a/config.yaml"), "--ckpt_path", "best"]) == 0
