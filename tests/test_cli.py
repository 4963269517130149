"""The `crossdistill` CLI: help for every command, config composition, run directories, resume."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.sources.integrity import file_digest
from lightning_modules.commands import LIGHTNING_COMMANDS, PROJECT_COMMANDS, main
from lightning_modules.runs.directory import RUN_NAME_ENV, RunDirError, locate_run
from tests.cli_helpers import (
    BASE,
    CONFIGS,
    CONSOLE_SCRIPT,
    REPO,
    print_config,
    subprocess_env,
    tiny,
    with_base,
)

ALL_COMMANDS = [*LIGHTNING_COMMANDS, *PROJECT_COMMANDS]


# help and composition


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ALL_COMMANDS:
        assert f"\n  {command} " in out


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main([command, "--help"])
    except SystemExit as stop:
        status = stop.code
    assert status in (0, None)
    assert "usage:" in capsys.readouterr().out.lower()


def test_commands_are_functions_of_the_commands_package() -> None:
    """The registry holds each command's `main` itself, imported from its module under
    `lightning_modules.commands`; importing the package imports neither torch nor Lightning (the
    commands import them when they run), so `crossdistill --help` stays quick."""
    for name, (function, _) in PROJECT_COMMANDS.items():
        assert callable(function), name
        assert function.__module__.startswith("lightning_modules.commands."), name
    code = "import lightning_modules.commands, sys; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "False"


def test_configs_compose_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    segments = ["--config", str(CONFIGS / "data/synthetic_segments.yaml")]
    data = print_config(capsys, *BASE, *segments)["data"]["init_args"]
    assert (data["task"], data["window_steps"]) == ("segments", 128)  # the later file wins
    assert data["modalities"]["flow"]["init_args"]["size"] == 64  # untouched keys stay
    flag = ["--data.init_args.window_steps", "32"]
    assert print_config(capsys, *BASE, *segments, *flag)["data"]["init_args"]["window_steps"] == 32
    assert print_config(capsys, *BASE, *flag, *segments)["data"]["init_args"]["window_steps"] == 128


def test_objectives_are_set_by_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """W&B sweep names such as model.init_args.objectives.global_relation.init_args.weight reach
    the objective of that name, whatever the order of the config; an unknown name is refused
    with the names the config has."""
    distill = with_base(CONFIGS / "distill/dense_features_dai21.yaml")
    base = ["--config", str(CONFIGS / "data/synthetic_features.yaml"), *distill]
    items = [
        "--model.init_args.objectives.global_relation.init_args.weight=0.25",
        "--model.init_args.objectives.boundary.init_args.weight", "4",
    ]  # fmt: skip
    objectives = print_config(capsys, *base, *items)["model"]["init_args"]["objectives"]
    weights = {name: o["init_args"]["weight"] for name, o in objectives.items()}
    assert weights == {"atomic": 1.0, "global_relation": 0.25, "boundary": 4}
    assert objectives["atomic"]["init_args"]["student_channels"] == 128  # the rest stays
    later = "--model.init_args.objectives.global_relation.init_args.weight=0.5"
    again = print_config(capsys, *base, *items, later)["model"]["init_args"]["objectives"]
    assert again["global_relation"]["init_args"]["weight"] == 0.5  # the later flag wins
    typo = "--model.init_args.objectives.atomc.init_args.weight=1"
    runs = f"--trainer.default_root_dir={tmp_path}"
    assert main(["fit", *base, typo, runs, "--trainer.fast_dev_run=true"]) == 1
    err = capsys.readouterr().err
    assert "objective 'atomc' names no objective class" in err
    assert "['atomic', 'global_relation', 'boundary']" in err


def config_files() -> list[Path]:
    return sorted(
        p for p in CONFIGS.rglob("*.yaml") if p.parent.name not in ("sweeps", "experiments")
    )


@pytest.mark.parametrize("path", config_files(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_parses(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each file composes over a complete teacher config (sweep files: tests/test_sweeps.py);
    an overlay ("compose after X.yaml" in its comment) over its base config too."""
    config = print_config(capsys, *BASE, *with_base(path))
    overridden = yaml.safe_load(path.read_text())
    for section in overridden:
        assert section in config


def test_no_distillation_config_copies_its_baselines_model() -> None:
    """The student is the RGB baseline's `model` (a distillation config composes after the
    baseline's config); a student block equal to a teacher config's model is a copy."""
    teachers = {
        path.name: yaml.safe_load(path.read_text())["model"]["init_args"]["model"]
        for path in (CONFIGS / "teacher").glob("*.yaml")
    }
    for path in (CONFIGS / "distill").glob("*.yaml"):
        init_args = (yaml.safe_load(path.read_text()).get("model") or {}).get("init_args") or {}
        assert "student" not in init_args, path.name
        copied = [name for name, model in teachers.items() if init_args.get("model") == model]
        assert not copied, f"{path.name} copies the model of {copied}"


def test_default_logger_is_csv_and_wandb_config_selects_wandb(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = print_config(capsys, *BASE)["trainer"]["logger"]
    assert logger["class_path"] == "pytorch_lightning.loggers.CSVLogger"
    wandb = ["--config", str(CONFIGS / "logger/wandb.yaml")]
    logger = print_config(capsys, *BASE, *wandb)["trainer"]["logger"]
    assert logger["class_path"] == "pytorch_lightning.loggers.WandbLogger"
    assert logger["init_args"]["project"] == "crossdistill"


# run names and folders (no training)


def test_run_name_precedence(tmp_path: Path) -> None:
    env = {RUN_NAME_ENV: "from-env", "WANDB_RUN_ID": "abc123"}
    assert locate_run("fit", "given", tmp_path, None, env).name == "given"
    assert locate_run("fit", None, tmp_path, None, env).name == "from-env"
    assert locate_run("fit", None, tmp_path, None, {"WANDB_RUN_ID": "abc123"}).name == "abc123"
    stamped = locate_run("fit", None, tmp_path, None, {})
    assert stamped.run_dir == tmp_path / stamped.name == stamped.stage_dir
    (tmp_path / stamped.name).mkdir()
    again = locate_run("fit", None, tmp_path, None, {})
    assert again.name != stamped.name  # a second run in the same second gets its own folder


def test_evaluation_writes_inside_the_run_and_resolves_its_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "a/checkpoints").mkdir(parents=True)
    (tmp_path / "a/checkpoints/best.ckpt").touch()
    location = locate_run("test", "a", tmp_path, "best", {})
    assert location.stage_dir == tmp_path / "a/test"
    assert location.ckpt_path == str(tmp_path / "a/checkpoints/best.ckpt")
    with pytest.raises(RunDirError, match=r"last.ckpt does not exist .*best.ckpt"):
        locate_run("test", "a", tmp_path, "last", {})


def test_run_folders_are_not_reused_by_mistake(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a/config.yaml").touch()
    with pytest.raises(RunDirError, match=r"already holds a run.*--ckpt_path last"):
        locate_run("fit", "a", tmp_path, None, {})
    with pytest.raises(RunDirError, match="no run is named"):
        locate_run("fit", None, tmp_path, "last", {})
    with pytest.raises(RunDirError, match=r"WORLD_SIZE=2.*--run_name"):
        locate_run("fit", None, tmp_path, None, {"WORLD_SIZE": "2"})
    with pytest.raises(RunDirError, match="plain folder name"):
        locate_run("fit", "../elsewhere", tmp_path, None, {})


# training runs


@pytest.fixture(scope="module")
def trained(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch fit named `a`, in its own runs folder."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 0
    return runs / "a"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_fit_fills_its_run_directory(trained: Path, bench: Path) -> None:
    assert (trained / "checkpoints/last.ckpt").is_file()
    assert (trained / "checkpoints/best.ckpt").is_file()
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["run_name"] == "a"
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(trained)
    assert config["data"]["init_args"]["root"] == str(bench)
    meta = json.loads((trained / "run_meta.json").read_text())
    assert meta["run_dir"] == str(trained.resolve()) and meta["subcommand"] == "fit"
    assert set(meta["git"]) == {"commit", "dirty"}
    assert set(meta["packages"]) >= {"torch", "pytorch-lightning", "torchmetrics", "wandb", "numpy"}
    assert all(meta["packages"].values())
    assert meta["device"]["root_device"] == "cpu" and meta["host"]
    assert meta["data"]["root"] == str(bench.resolve())
    assert meta["data"]["blake2b"]["benchmark.json"] == file_digest(bench / "benchmark.json")
    assert "annotations/activitynet.json" in meta["data"]["blake2b"]
    assert meta["teachers"] == {} and meta["history"] == []
    rows = read_csv(trained / "metrics.csv")
    assert any(row["val/frame_mAP"] for row in rows) and any(row["train/loss"] for row in rows)
    best = torch.load(trained / "checkpoints/best.ckpt", weights_only=False)
    state = best["callbacks"]["RunCheckpoint"]
    assert state["monitor"] == "val/frame_mAP" and state["best_model_path"].endswith("best.ckpt")


def test_test_writes_predictions_next_to_the_checkpoints(trained: Path) -> None:
    config = str(trained / "config.yaml")
    assert main(["test", "--config", config, "--ckpt_path", "best"]) == 0
    folder = trained / "test"
    assert (folder / "predictions/frames.npz").is_file()
    assert yaml.safe_load((folder / "config.yaml").read_text())["ckpt_path"] == str(
        trained / "checkpoints/best.ckpt"
    )
    assert json.loads((folder / "run_meta.json").read_text())["subcommand"] == "test"
    assert any(row.get("test/frame_mAP") for row in read_csv(folder / "metrics.csv"))


def test_fit_refuses_an_existing_run(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "--config", str(trained / "config.yaml")]
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_resume_continues_the_run_directory_and_its_epochs(bench: Path, tmp_path: Path) -> None:
    """An interrupted 1-epoch run resumed to 2 epochs ends where a 2-epoch run ends."""
    runs = tmp_path / "runs"
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 0
    resume = ["--config", str(runs / "a/config.yaml"), "--ckpt_path", "last"]
    assert main(["fit", *resume, "--trainer.max_epochs", "2"]) == 0
    full = ["--run_name", "full", "--trainer.max_epochs", "2"]
    assert main(["fit", *BASE, *tiny(bench, runs), *full]) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["a", "full"]
    resumed = torch.load(runs / "a/checkpoints/last.ckpt", weights_only=False)
    straight = torch.load(runs / "full/checkpoints/last.ckpt", weights_only=False)
    assert (resumed["epoch"], resumed["global_step"]) == (
        straight["epoch"],
        straight["global_step"],
    )
    assert resumed["epoch"] == 1 and resumed["global_step"] > 0
    meta = json.loads((runs / "a/run_meta.json").read_text())
    assert meta["ckpt_path"] == str(runs / "a/checkpoints/last.ckpt")
    assert len(meta["history"]) == 1 and meta["history"][0]["ckpt_path"] is None
    first, second = read_csv(runs / "a/metrics.0.csv"), read_csv(runs / "a/metrics.csv")
    assert {row["epoch"] for row in first} == {"0"} and {row["epoch"] for row in second} == {"1"}
    # the best checkpoint is chosen over both sessions
    scores = [float(r["val/frame_mAP"]) for r in first + second if r["val/frame_mAP"]]
    best = resumed["callbacks"]["RunCheckpoint"]["best_model_score"]
    assert len(scores) == 2 and float(best) == pytest.approx(max(scores))


@pytest.mark.slow
def test_ddp_ranks_share_one_run_directory(bench: Path, tmp_path: Path) -> None:
    """Lightning starts the second rank by running the command again: it must find the same run."""
    runs = tmp_path / "runs"
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    command = [str(CONSOLE_SCRIPT), "fit", *BASE, *tiny(bench, runs), *ddp]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs.iterdir()
    assert (run / "checkpoints/last.ckpt").is_file()
    assert json.loads((run / "run_meta.json").read_text())["device"]["world_size"] == 2
