"""Where a run writes: `<trainer.default_root_dir>/<run_name>`, and how it is resumed.

The run's name comes from `--run_name`, else `$CROSSDISTILL_RUN_NAME` (set by the CLI itself so
that processes Lightning spawns for DDP agree), else `$WANDB_RUN_ID` (a W&B sweep agent's run, so
the folder and the W&B run share a name), else the start time. `fit` writes into the run
directory itself; `validate`/`test`/`predict` write into its `<subcommand>/` folder, so that the
predictions of a trained run sit next to its checkpoints. `--ckpt_path last|best` names the run's
own `checkpoints/last.ckpt` and `checkpoints/best.ckpt`; `fit --ckpt_path last` on a run that
stopped before writing its first `last.ckpt` (preempted in its first epoch) starts it again from
the beginning in the same folder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

RUN_NAME_ENV = "CROSSDISTILL_RUN_NAME"
CHECKPOINTS = "checkpoints"
CONFIG_FILE = "config.yaml"
META_FILE = "run_meta.json"
RUN_CHECKPOINTS = ("last", "best")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message says what to do instead."""


@dataclass(frozen=True)
class RunLocation:
    """The run's name and folders, and the checkpoint it starts from."""

    name: str
    run_dir: Path
    """`<runs root>/<name>`: the config, metadata, checkpoints and logs of `fit`."""
    stage_dir: Path
    """Where this command writes: `run_dir` for `fit`, `run_dir/<subcommand>` otherwise."""
    ckpt_path: str | None
    """The checkpoint to load, with `last`/`best` replaced by the run's own files."""
    resumed: bool
    """`fit` continuing a run that already has files in `run_dir`."""


def locate_run(
    subcommand: str,
    run_name: str | None,
    runs_root: str | Path | None,
    ckpt_path: str | None,
    environ: Mapping[str, str],
) -> RunLocation:
    """Name the run, check that its folder can be used for `subcommand`, resolve `ckpt_path`."""
    root = Path(runs_root or ".")
    name = run_name or environ.get(RUN_NAME_ENV) or environ.get("WANDB_RUN_ID")
    if name is None:
        if ckpt_path in RUN_CHECKPOINTS:
            raise RunDirError(
                f"--ckpt_path {ckpt_path} names a checkpoint of an earlier run, but no run is "
                f"named. Fix: pass that run's config, `--config {root}/NAME/{CONFIG_FILE}` (it "
                "holds run_name), or `--run_name NAME`"
            )
        _check_single_process(environ)
        name = _fresh_name(root)
    _check_name(name)
    run_dir = root / name
    stage_dir = run_dir if subcommand == "fit" else run_dir / subcommand
    resumed = subcommand == "fit" and (run_dir / CONFIG_FILE).exists()
    last = run_dir / CHECKPOINTS / "last.ckpt"
    restart = resumed and ckpt_path == "last" and not last.is_file()
    if restart:  # stopped (preempted) before its first epoch ended: start over, same seed
        ckpt_path = None
    elif ckpt_path in RUN_CHECKPOINTS:
        ckpt_path = str(_run_checkpoint(run_dir, ckpt_path))
    if resumed and ckpt_path is None and not restart:
        raise RunDirError(
            f"{run_dir} already holds a run. Fix: resume it with `--ckpt_path last`, or start a "
            "new run with another --run_name (or none, for a time-stamped one)"
        )
    return RunLocation(name, run_dir, stage_dir, ckpt_path, resumed)


LOCK_FILE = ".lock"


def lock_folder(folder: Path) -> IO[str]:
    """Hold an exclusive lock on `folder` for as long as this process lives (the system drops
    it when the process ends, even on kill -9): two commands started with one run name would
    otherwise write one folder together. Returns the open lock file; keep it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirError(
            f"{folder} is in use by {holder}: two commands would write one run folder. Fix: "
            "wait for it to end, or give this run another --run_name"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"crossdistill pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def _run_checkpoint(run_dir: Path, which: str) -> Path:
    path = run_dir / CHECKPOINTS / f"{which}.ckpt"
    if not path.is_file():
        found = sorted(p.name for p in (run_dir / CHECKPOINTS).glob("*.ckpt"))
        raise RunDirError(
            f"--ckpt_path {which}: {path} does not exist (checkpoints there: {found or 'none'}). "
            "Fix: check --run_name and trainer.default_root_dir, or pass a checkpoint file"
        )
    return path


def _fresh_name(root: Path) -> str:
    """The start time, with a counter when another run started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name, count = stamp, 1
    while (root / name).exists():
        name, count = f"{stamp}-{count}", count + 1
    return name


def _check_single_process(environ: Mapping[str, str]) -> None:
    """Launchers that start every rank themselves (torchrun, srun) need a name all ranks share."""
    for variable in ("WORLD_SIZE", "SLURM_NTASKS"):
        if int(environ.get(variable, "1") or 1) > 1:
            raise RunDirError(
                f"{variable}={environ[variable]}: each process of a multi-process launch would "
                "time-stamp its own run directory. Fix: pass --run_name NAME (the same on every "
                f"node), or set {RUN_NAME_ENV}"
            )


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise RunDirError(f"run name {name!r} must be a plain folder name (no '/')")
