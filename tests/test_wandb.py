"""W&B logging offline: the run's files hold the config (once, nested), metrics and artifacts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lightning_modules.runs.wandb_files import read_runs, run_files
from tests.cli_helpers import BASE, CONFIGS, CONSOLE_SCRIPT, subprocess_env, tiny
from tests.data_helpers import tiny_benchmark

WANDB = ["--config", str(CONFIGS / "logger/wandb.yaml")]
# a W&B record longer than a 32 KiB block of the transaction log, to read one split in chunks
NOTES = "n" * 40_000


def fit(args: list[str], tmp: Path) -> None:
    command = [str(CONSOLE_SCRIPT), "fit", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(tmp))
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch fit logging to an offline W&B run, checkpoints uploaded as artifacts."""
    bench = tiny_benchmark(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("wandb")
    extra = [
        "--run_name", "w",
        "--trainer.logger.init_args.log_model", "true",
        "--trainer.logger.init_args.tags", "[test]",
        "--trainer.logger.init_args.notes", NOTES,
    ]  # fmt: skip
    fit([*BASE, *WANDB, *tiny(bench, tmp / "runs"), *extra], tmp)
    return tmp / "runs/w"


def test_offline_run_holds_config_metrics_and_best_checkpoint(wandb_run: Path) -> None:
    meta = json.loads((wandb_run / "run_meta.json").read_text())
    run_id = meta["wandb"]["id"]
    files = run_files(wandb_run / "wandb", run_id)
    assert len(files) == 1 and Path(meta["wandb"]["dir"]) == files[0].parent
    run = read_runs(files)
    assert run.exit_code == 0
    # the resolved config, nested as in YAML, sent once; no flat module hyperparameters
    assert run.config_updates == 1
    assert {"trainer", "model", "data", "run_name"} <= set(run.config)
    assert "lr" not in run.config and run.config["run_name"] == "w"
    assert run.config["model"]["init_args"]["lr"] == 0.002
    assert run.config["trainer"]["logger"]["init_args"]["notes"] == NOTES
    # metrics per step and per validation, and the summary
    assert any("train/loss" in row for row in run.history)
    assert [row["val/frame_mAP"] for row in run.history if "val/frame_mAP" in row]
    assert {"val/frame_mAP", "val/loss", "train/loss"} <= set(run.summary)
    # log_model: the best checkpoint (and the last) as model artifacts
    assert any("best" in artifact["aliases"] for artifact in run.artifacts)
    assert {artifact["type"] for artifact in run.artifacts} == {"model"}


@pytest.mark.slow
def test_resumed_fit_continues_the_same_wandb_run(wandb_run: Path) -> None:
    tmp = wandb_run.parents[1]
    args = ["--config", str(wandb_run / "config.yaml"), "--ckpt_path", "last"]
    fit([*args, "--trainer.max_epochs", "2", "--trainer.logger.init_args.log_model", "false"], tmp)
    run_id = json.loads((wandb_run / "run_meta.json").read_text())["wandb"]["id"]
    files = run_files(wandb_run / "wandb", run_id)
    assert len(files) == 2  # one offline folder per session, the same W&B run id
    epochs = {row["epoch"] for row in read_runs(files).history if "val/frame_mAP" in row}
    assert epochs == {0, 1}
