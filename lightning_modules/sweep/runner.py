"""A sweep's trials on this machine, with offline W&B runs (`crossdistill sweep run`).

Each trial is the agent's command line run as a subprocess, with the environment the agent gives
it (`WANDB_RUN_ID`, so that the run directory and the W&B run are named after the trial) plus
`WANDB_MODE=offline` and `WANDB_RUN_GROUP=<sweep name>`. Its metric is read from its offline W&B
run and fed back to the engine; `wandb sync` uploads the runs later.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning_modules.runs.directory import RUN_NAME_ENV
from lightning_modules.runs.wandb_files import read_runs, run_files
from lightning_modules.sweep.agent import agent_command
from lightning_modules.sweep.dry_run import CommandError, dry_run
from lightning_modules.sweep.engine import SweepFileError, SweepState, Trial, draw

Say = Callable[[str], None]


def trial_env(trial_id: str, group: str) -> dict[str, str]:
    """The trial's environment: this one, offline W&B named after the trial, and the scripts of
    this installation first on PATH, so that the command's `crossdistill` is the one running the
    sweep (`.venv/bin/crossdistill sweep run` works without activating the venv)."""
    env = dict(os.environ)
    env.pop(RUN_NAME_ENV, None)  # the trial's run is named by WANDB_RUN_ID
    env.update({"WANDB_MODE": "offline", "WANDB_RUN_ID": trial_id, "WANDB_RUN_GROUP": group})
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [scripts, *(p for p in env.get("PATH", "").split(os.pathsep) if p)]
    )
    return env


def run_sweep(
    sweep: dict[str, Any], name: str, count: int, folder: Path, extra: list[str], say: Say = print
) -> int:
    """Run trials until `count` are done (counting earlier ones in `folder`); 0 if any finished."""
    metric = sweep.get("metric") or {}
    if "name" not in metric:
        raise SweepFileError("`sweep run` ranks trials by `metric.name`: add a metric section")
    goal = metric.get("goal", "minimize")
    state = SweepState.open(folder, sweep)
    if state.done:
        say(f"{len(state.done)} trial(s) already done in {folder}")
    while len(state.done) < count:
        drawn = draw(sweep, state.trials)
        if not drawn:
            say("the grid is exhausted")
            break
        params = drawn[0]
        trial = state.new_trial(params, [])
        trial.command = [*agent_command(sweep, params, folder / f"{trial.id}.json"), *extra]
        env = trial_env(trial.id, name)
        config = dry_run(trial.command, params, env)
        trial.run_dir = str(_run_dir(config, trial.id))
        state.save()
        say(f"trial {len(state.done) + 1}/{count} {trial.id}: {' '.join(trial.command)}")
        _launch(trial, env, folder / f"{trial.id}.log")
        _read_metric(trial, metric["name"])
        state.save()
        value = trial.best(metric["name"], goal)
        say(f"  {trial.state} in {trial.seconds:.0f} s, {metric['name']} = {value}")
        if trial.state == "failed":
            say(f"  exit status {trial.exit_code}; log: {folder / f'{trial.id}.log'}")
    say(leaderboard(state.done, metric["name"], goal))
    finished = [t for t in state.done if t.state == "finished"]
    if finished:
        runs = " ".join(f"{t.run_dir}/wandb/offline-run-*" for t in finished)
        say(f"upload the runs to W&B later with: wandb sync {runs}")
    return 0 if finished else 1


def _run_dir(config: Mapping[str, Any], trial_id: str) -> Path:
    """Where the trial's run will write (its name comes from WANDB_RUN_ID), if it logs to W&B."""
    from pytorch_lightning.loggers import WandbLogger

    if config.get("run_name"):
        raise CommandError("a sweep command must not set run_name: trials name their own runs")
    loggers = config["trainer"].get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    if not any(_is_subclass(logger, WandbLogger) for logger in loggers):
        raise CommandError(
            "the trials do not log to W&B, where `sweep run` reads their metric. Fix: add "
            "`--config configs/logger/wandb.yaml` to the sweep's command"
        )
    return Path(config["trainer"].get("default_root_dir") or ".") / trial_id


def _is_subclass(logger: Any, cls: type) -> bool:
    if not isinstance(logger, Mapping) or "class_path" not in logger:
        return False
    module, _, name = logger["class_path"].rpartition(".")
    return issubclass(getattr(importlib.import_module(module), name), cls)


def _launch(trial: Trial, env: dict[str, str], log: Path) -> None:
    start = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(trial.command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            trial.exit_code = process.wait()
        except BaseException:  # Ctrl-C: stop the trial too; it stays "running" and is redrawn
            process.terminate()
            process.wait()
            raise
    trial.seconds = time.monotonic() - start
    trial.state = "finished" if trial.exit_code == 0 else "failed"


def _read_metric(trial: Trial, metric: str) -> None:
    assert trial.run_dir is not None
    files = run_files(Path(trial.run_dir) / "wandb", trial.id)
    if not files:
        return
    run = read_runs(files)
    trial.history = [row[metric] for row in run.history if _number(row.get(metric))]
    value = run.summary.get(metric)
    trial.summary = value if _number(value) else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def leaderboard(trials: list[Trial], metric: str, goal: str) -> str:
    """Trials best first (by the metric's best value, as the engine reads it), then the rest."""
    sign = -1.0 if goal == "maximize" else 1.0
    scored = [(t.best(metric, goal), t) for t in trials]
    ranked = sorted(scored, key=lambda s: (s[0] is None, sign * s[0] if s[0] is not None else 0))
    names = sorted({name for t in trials for name in t.params})
    header = ["rank", "trial", "state", metric, *names, "run dir"]
    rows = [
        [
            str(rank),
            trial.id,
            trial.state,
            "-" if value is None else f"{value:.4g}",
            *(_short(trial.params.get(name)) for name in names),
            trial.run_dir or "-",
        ]
        for rank, (value, trial) in enumerate(ranked, 1)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    title = "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))
    best = ranked[0] if ranked and ranked[0][0] is not None else None
    footer = (
        f"best: {best[1].id} ({metric} = {best[0]:.4g}), run dir {best[1].run_dir}"
        if best
        else "best: none (no trial logged the metric)"
    )
    return "\n".join([f"leaderboard ({goal} {metric}):", title, *lines, footer])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
