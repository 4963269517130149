"""Trials of a sweep, drawn by W&B's own engine and kept in `<sweep dir>/sweep.json`.

`sweeps.next_run` is the code the W&B server runs for grid, random and bayes search; it is given
every finished trial with the metric values its W&B run logged, as the server would be, so bayes
search learns from them and grid search does not repeat a point. Trials that were running when
the runner stopped are forgotten and drawn again; failed ones count (bayes imputes the worst
value for them, as W&B does).
"""

from __future__ import annotations

import json
import secrets
import string
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

with warnings.catch_warnings():  # sweeps 0.2 declares pydantic-1 config keys
    warnings.simplefilter("ignore")
    import sweeps

STATE_FILE = "sweep.json"


class SweepFileError(ValueError):
    """A sweep file that W&B would refuse, or that cannot be run here."""


def load_sweep(path: Path) -> dict[str, Any]:
    """Read a sweep file and check it against W&B's schema."""
    sweep = yaml.safe_load(path.read_text())
    if not isinstance(sweep, dict):
        raise SweepFileError(f"{path}: not a mapping")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sweeps.SweepConfig(sweep)
    except Exception as err:  # jsonschema's ValidationError, or ValueError
        message = getattr(err, "message", str(err))
        raise SweepFileError(f"{path}: not a valid W&B sweep: {message}") from err
    return sweep


def draw(sweep: Mapping[str, Any], trials: list[Trial], n: int = 1) -> list[dict[str, Any]]:
    """Up to `n` parameter sets after `trials`; fewer when a grid is exhausted."""
    metric = (sweep.get("metric") or {}).get("name")
    runs = [trial.sweep_run(metric) for trial in trials]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic-1 config, GP convergence
        drawn = sweeps.next_runs(dict(sweep), runs, validate=True, n=n)
    return [
        {name: _plain(spec["value"]) for name, spec in run.config.items()}
        for run in drawn
        if run is not None
    ]


@dataclass
class Trial:
    """One trial: its parameters, command, where it ran and what its W&B run logged."""

    id: str
    params: dict[str, Any]
    command: list[str]
    state: str = "running"  # running | finished | failed
    run_dir: str | None = None
    exit_code: int | None = None
    history: list[float] = field(default_factory=list)
    """The metric's values in the run's W&B history, in order."""
    summary: float | None = None
    """The metric's value in the run's W&B summary (the last logged)."""
    seconds: float | None = None

    def sweep_run(self, metric: str | None) -> sweeps.SweepRun:
        """The trial as the engine sees a W&B run."""
        summary = {metric: self.summary} if metric and self.summary is not None else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return sweeps.SweepRun(
                name=self.id,
                state=self.state,
                config={name: {"value": value} for name, value in self.params.items()},
                summaryMetrics=summary,
                sampledHistory=[{metric: value} for value in self.history] if metric else [],
            )

    def best(self, metric: str, goal: str) -> float | None:
        """The trial's best metric value, as bayes search reads it (None when it has none)."""
        try:
            return float(self.sweep_run(metric).metric_extremum(metric, goal))
        except ValueError:
            return None


@dataclass
class SweepState:
    """The trials of one sweep file, saved after every change so that a run can be resumed."""

    folder: Path
    sweep: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)

    @classmethod
    def open(cls, folder: Path, sweep: dict[str, Any]) -> SweepState:
        path = folder / STATE_FILE
        if not path.is_file():
            return cls(folder, sweep)
        saved = json.loads(path.read_text())
        if saved["sweep"] != _plain(sweep):
            raise SweepFileError(
                f"{path} holds trials of a different version of this sweep file. Fix: pass "
                "another --dir for the changed sweep, or restore the file"
            )
        trials = [Trial(**trial) for trial in saved["trials"]]
        return cls(folder, sweep, [t for t in trials if t.state != "running"])

    @property
    def done(self) -> list[Trial]:
        return [t for t in self.trials if t.state in ("finished", "failed")]

    def new_trial(self, params: dict[str, Any], command: list[str]) -> Trial:
        taken = {t.id for t in self.trials}
        trial_id = _run_id()
        while trial_id in taken:
            trial_id = _run_id()
        trial = Trial(trial_id, params, command)
        self.trials.append(trial)
        return trial

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"sweep": _plain(self.sweep), "trials": [asdict(t) for t in self.trials]}
        temporary = self.folder / f"{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.folder / STATE_FILE)


def _run_id() -> str:
    """A W&B-style run id: 8 lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _plain(value: Any) -> Any:
    """numpy scalars from the engine as Python values (as the W&B server's JSON delivers them)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
