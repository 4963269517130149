"""`run_meta.json`: what a run's numbers depend on besides its config.

The code (git commit and whether the tree had uncommitted changes), the package versions, the
machine and device, the data (root, and a hash of the manifest and annotation files, cheap to
compute and enough to notice a changed dataset) and the teacher checkpoints a distillation run
loads (hashed by content, like the teacher cache keys them).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from datamodules.sources.integrity import DIGEST, file_digest, write_atomic
from lightning_modules.runs.directory import RunDirError, RunLocation

PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "wandb", "numpy", "jsonargparse")
MANIFEST = "benchmark.json"
_SOURCE_DIR = Path(__file__).resolve().parents[2]


def collect_meta(
    trainer: pl.Trainer, config: Mapping[str, Any], subcommand: str, location: RunLocation
) -> dict[str, Any]:
    """The metadata of one command on `trainer` (call on rank 0, once loggers exist)."""
    model_args = (config.get("model") or {}).get("init_args") or {}
    meta: dict[str, Any] = {
        "run_name": location.name,
        "run_dir": str(location.run_dir.resolve()),
        "subcommand": subcommand,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ckpt_path": location.ckpt_path,
        "git": git_state(_SOURCE_DIR),
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "device": device_info(trainer),
        "data": data_info(trainer.datamodule),
        "teachers": teacher_hashes(model_args.get("teachers") or {}),
    }
    wandb_run = wandb_info(trainer)
    if wandb_run:
        meta["wandb"] = wandb_run
    return meta


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Write `meta` atomically (a full disk or a kill leaves the previous file whole), keeping
    the entries of earlier commands on the same folder (resumed fits)."""
    history: list[dict[str, Any]] = []
    previous = read_meta(path)
    if previous is not None:
        history = [*previous.pop("history", []), previous]
    text = json.dumps({**meta, "history": history}, indent=2, default=str) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


def changed_inputs(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What a resumed run would read differently from what its earlier sessions read: teacher
    checkpoints and data files (by content digest), and the data root. Records of another hash
    (an earlier version's sha256) name no digest of ours and are compared by path only."""
    changes = []
    before, now = previous.get("teachers") or {}, current.get("teachers") or {}
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name) or {}, now.get(name) or {}
        compared = DIGEST if DIGEST in old or not old else "path"
        if old.get(compared) != new.get(compared):
            changes.append(
                f"teacher {name!r}: {old.get('path')} ({DIGEST} {str(old.get(DIGEST))[:12]}) -> "
                f"{new.get('path')} ({DIGEST} {str(new.get(DIGEST))[:12]})"
            )
    old_data, new_data = previous.get("data") or {}, current.get("data") or {}
    if old_data.get("root") != new_data.get("root"):
        changes.append(f"data root: {old_data.get('root')} -> {new_data.get('root')}")
    old_files, new_files = old_data.get(DIGEST), new_data.get(DIGEST) or {}
    if old_files is None:
        return changes

    for name in sorted(set(old_files) | set(new_files)):
        if old_files.get(name) != new_files.get(name):
            changes.append(f"data file {name}: its content changed (or it was added or removed)")
    return changes


def read_meta(path: Path) -> dict[str, Any] | None:
    """The recorded metadata, `None` when there is none; a damaged file is named with the fix."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunDirError(
            f"{path} is damaged ({err}): it was cut off by an earlier version that rewrote it in "
            "place. Fix: move it away (the run's config.yaml and checkpoints are enough to "
            "resume; the file's history of earlier commands is lost)"
        ) from err


def git_state(folder: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout the code runs from (untracked files count)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def device_info(trainer: pl.Trainer) -> dict[str, Any]:
    device = trainer.strategy.root_device
    info: dict[str, Any] = {
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(trainer.strategy).__name__,
        "root_device": str(device),
        "devices": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "precision": trainer.precision,
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def data_info(datamodule: Any) -> dict[str, Any]:
    """Root and file hashes of a datamodule that exposes `root` (and `annotation_files`)."""
    root = getattr(datamodule, "root", None)
    if root is None:
        return {}
    root = Path(root)
    files = [root / MANIFEST, *map(Path, getattr(datamodule, "annotation_files", []))]
    return {
        "root": str(root.resolve()),
        DIGEST: {_relative(p, root): file_digest(p) for p in dict.fromkeys(files) if p.is_file()},
    }


def teacher_hashes(teachers: Mapping[str, str]) -> dict[str, dict[str, str | None]]:
    return {
        name: {"path": str(path), DIGEST: file_digest(Path(path)) if Path(path).is_file() else None}
        for name, path in teachers.items()
    }


def wandb_info(trainer: pl.Trainer) -> dict[str, Any] | None:
    """Id, project and folder of the W&B run, so that a resumed fit continues the same W&B run."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            return {
                "id": run.id,
                "project": run.project,
                "dir": str(Path(run.dir).parent.resolve()),
            }
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
