"""`crossdistill sweep`: agent command lines, W&B's engine, dry runs, and an offline sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from datamodules.sources.integrity import file_digest
from lightning_modules.commands import main
from lightning_modules.runs.wandb_files import read_runs, run_files
from lightning_modules.sweep.agent import agent_command
from lightning_modules.sweep.engine import STATE_FILE, SweepFileError, SweepState, Trial, draw
from lightning_modules.sweep.runner import leaderboard
from tests.cli_helpers import CONFIGS, CONSOLE_SCRIPT, FEATURES, REPO, subprocess_env
from tests.data_helpers import tiny_benchmark, with_random_features

SWEEP_FILES = sorted((CONFIGS / "sweeps").glob("*.yaml"))
FIT = ["crossdistill", "fit", "--config", "configs/data/synthetic.yaml"]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials find `crossdistill` on PATH and resolve the sweeps' relative config paths."""
    for name, value in subprocess_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)


# the agent's command line


def test_agent_command_expands_every_macro_as_wandb_agent(tmp_path: Path) -> None:
    sweep = {
        "program": "train.py",
        "command": [
            "${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}",
            "${args_no_boolean_flags}", "${args_json}", "${args_no_equals}",
            "${args_json_file}", "${envvar:CROSSDISTILL_TEST_VALUE}", "${unknown}", "x${args}",
        ],
    }  # fmt: skip
    params = {"model.init_args.lr": 0.01, "flag": False, "on": True}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROSSDISTILL_TEST_VALUE", "from-env")
        words = agent_command(sweep, params, tmp_path / "args.json")
    json_args = '{"model.init_args.lr": 0.01, "flag": false, "on": true}'
    assert words == [
        "/usr/bin/env", "python", "train.py",
        "--model.init_args.lr=0.01", "--flag=False", "--on=True",
        "model.init_args.lr=0.01", "flag=False", "on=True",
        "--model.init_args.lr=0.01", "--on",
        json_args,
        "--model.init_args.lr", "0.01", "--flag", "False", "--on", "True",
        str(tmp_path / "args.json"), "from-env", "x${args}",
    ]  # fmt: skip
    assert (tmp_path / "args.json").read_text() == json_args


def test_default_command_needs_a_program(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no `program`"):
        agent_command({}, {"a": 1}, tmp_path / "args.json")


# W&B's engine and the trials


def test_engine_draws_grid_random_and_bayes() -> None:
    grid = {"method": "grid", "parameters": {"a": {"values": [1, 2]}, "b": {"value": "x"}}}
    assert draw(grid, [], 5) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert draw(grid, [Trial("t1", {"a": 1, "b": "x"}, [], "finished")], 5) == [{"a": 2, "b": "x"}]
    space = {"a": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}
    for method in ("random", "bayes"):
        sweep = {"method": method, "metric": {"name": "m", "goal": "maximize"}, "parameters": space}
        finished = [
            Trial(f"t{i}", {"a": 1e-3 * i}, [], "finished", summary=0.1 * i) for i in (1, 5)
        ]
        drawn = draw(sweep, finished, 2)
        assert len(drawn) == 2 and all(1e-4 <= d["a"] <= 1e-2 for d in drawn)
        assert all(type(d["a"]) is float for d in drawn)  # plain floats, as from W&B's server


def test_trial_best_value_follows_the_goal() -> None:
    trial = Trial("t", {}, [], "finished", history=[0.2, 0.5, 0.4], summary=0.4)
    assert trial.best("m", "maximize") == 0.5 and trial.best("m", "minimize") == 0.2
    assert Trial("f", {}, [], "failed").best("m", "maximize") is None


def test_sweep_state_keeps_done_trials_and_redraws_interrupted_ones(tmp_path: Path) -> None:
    sweep = {"method": "grid", "parameters": {"a": {"values": [1, 2, 3]}}}
    state = SweepState.open(tmp_path, sweep)
    for value, status in ((1, "finished"), (2, "failed"), (3, "running")):
        state.new_trial({"a": value}, ["cmd"]).state = status
    state.save()
    reopened = SweepState.open(tmp_path, sweep)
    assert [t.params["a"] for t in reopened.trials] == [1, 2]
    assert draw(sweep, reopened.trials, 5) == [{"a": 3}]
    changed = {"method": "grid", "parameters": {"a": {"values": [1, 2]}}}
    with pytest.raises(SweepFileError, match="different version"):
        SweepState.open(tmp_path, changed)
    assert json.loads((tmp_path / STATE_FILE).read_text())["trials"][0]["state"] == "finished"


def test_leaderboard_ranks_by_goal_and_puts_failures_last() -> None:
    trials = [
        Trial("low", {"lr": 0.1}, [], "finished", history=[0.1], run_dir="runs/low"),
        Trial("bad", {"lr": 0.3}, [], "failed"),
        Trial("high", {"lr": 0.2}, [], "finished", history=[0.3], run_dir="runs/high"),
    ]
    table = leaderboard(trials, "val/m", "maximize").splitlines()
    assert [line.split()[1] for line in table[2:5]] == ["high", "low", "bad"]
    assert table[-1] == "best: high (val/m = 0.3), run dir runs/high"
    assert leaderboard(trials, "val/m", "minimize").splitlines()[2].split()[1] == "low"


def test_invalid_sweep_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"method": "annealing", "parameters": {"a": {"value": 1}}}))
    assert main(["sweep", "validate", str(path)]) == 1
    assert "not a valid W&B sweep" in capsys.readouterr().err


# dry runs through crossdistill


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
@pytest.mark.usefixtures("cli_env")
def test_every_sweep_file_validates(path: Path) -> None:
    assert main(["sweep", "validate", str(path), "--draws", "2"]) == 0


def write_sweep(tmp_path: Path, parameters: dict, command: list[str]) -> Path:
    sweep = {"method": "random", "metric": {"name": "val/frame_mAP", "goal": "maximize"}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**sweep, "parameters": parameters, "command": command}))
    return path


@pytest.mark.usefixtures("cli_env")
def test_validate_names_a_misspelt_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = ["--config", "configs/teacher/dense_flow.yaml"]
    path = write_sweep(
        tmp_path, {"model.init_args.lrr": {"values": [0.1]}}, [*FIT, *teacher, "${args}"]
    )
    assert main(["sweep", "validate", str(path), "--draws", "1"]) == 1
    error = capsys.readouterr().err
    assert "rejected" in error and "model.init_args.lrr" in error


@pytest.mark.usefixtures("cli_env")
def test_validate_catches_a_parameter_overridden_after_args(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`${args}` before a config that sets lr again: the drawn lr is lost."""
    teacher = ["--config", "configs/teacher/dense_flow.yaml"]
    command = [*FIT, *teacher, "${args}", *teacher]
    path = write_sweep(tmp_path, {"model.init_args.lr": {"values": [0.1]}}, command)
    assert main(["sweep", "validate", str(path), "--draws", "1"]) == 1
    assert "model.init_args.lr=0.1 does not reach the config" in capsys.readouterr().err


# an offline sweep


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A feature benchmark, and overrides that train on it with two 1-step feature teachers."""
    bench = with_random_features(
        tiny_benchmark(tmp_path_factory), tmp_path_factory.mktemp("sweep") / "bench"
    )
    runs = tmp_path_factory.mktemp("teachers")
    overrides = [
        "--data.init_args.root", str(bench),
        "--trainer.max_epochs", "1",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    checkpoints = []
    for modality in ("flow", "pose"):
        config = ["--config", str(CONFIGS / f"teacher/dense_features_{modality}.yaml")]
        names = ["--run_name", modality, "--trainer.default_root_dir", str(runs)]
        assert main(["fit", *FEATURES, *config, *overrides, *names]) == 0
        checkpoints.append(
            f"--model.init_args.teachers.{modality}={runs}/{modality}/checkpoints/last.ckpt"
        )
    return runs, [*overrides, *checkpoints]


@pytest.mark.slow
@pytest.mark.usefixtures("cli_env")
def test_sweep_runs_offline_and_resumes(
    tmp_path: Path, teachers: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 7's done-when: three bayes trials of a real sweep file, offline, and a leaderboard."""
    teacher_runs, overrides = teachers
    runs, folder = tmp_path / "runs", tmp_path / "sweep"
    path = str(CONFIGS / "sweeps/dai21_dense.yaml")
    extra = [*overrides, "--trainer.default_root_dir", str(runs)]
    args = ["sweep", "run", path, "--count", "3", "--dir", str(folder), "--", *extra]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = out[out.index("leaderboard") :].splitlines()
    assert len([line for line in table if " finished " in line]) == 3
    assert table[-2].startswith("best: ") and "wandb sync" in table[-1]
    trials = json.loads((folder / STATE_FILE).read_text())["trials"]
    assert [t["state"] for t in trials] == ["finished"] * 3
    for trial in trials:  # each metric came from the trial's own offline W&B run
        assert trial["history"] and trial["run_dir"] == str(runs / trial["id"])
        assert trial["command"][:2] == ["crossdistill", "fit"]
        name = "model.init_args.objectives.boundary.init_args.weight"
        assert f"--{name}={trial['params'][name]}" in trial["command"]
    # the student logged each objective's term; its metadata names the teachers it read
    best = Path(trials[0]["run_dir"])
    history = read_runs(run_files(best / "wandb", trials[0]["id"])).history
    assert {"train/atomic", "train/global_relation", "train/boundary"} <= set(history[0])
    meta = json.loads((best / "run_meta.json").read_text())
    flow = teacher_runs / "flow/checkpoints/last.ckpt"
    assert meta["teachers"]["flow"] == {"path": str(flow), "blake2b": file_digest(flow)}
    # run again: the three trials are done, nothing is launched
    assert main(args) == 0
    assert "3 trial(s) already done" in capsys.readouterr().out
    assert len(json.loads((folder / STATE_FILE).read_text())["trials"]) == 3


def test_trials_run_the_crossdistill_of_this_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    """`.venv/bin/crossdistill sweep run` without an activated venv: the trials' `crossdistill`
    is found next to the interpreter running the sweep (it was a FileNotFoundError traceback)."""
    import sys

    from lightning_modules.sweep.runner import trial_env

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = trial_env("t1", "group")
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert shutil.which("crossdistill", path=env["PATH"]) == str(CONSOLE_SCRIPT)
    assert env["WANDB_MODE"] == "offline" and env["WANDB_RUN_ID"] == "t1"
