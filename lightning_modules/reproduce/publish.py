"""Where and how a table was made, and the small copy of it a reader needs.

`reproduce` records each invocation that ran jobs in `OUT/logs/invocations.json` (the commit
of the code, whether the tree had changes, the machine, its wall time and load) and puts the
summary in `results.json` under `"provenance"`. `--publish DIR` then copies what the notebooks
and the claims test read into `DIR` (by convention `experiments/results/<table>/`), in the
layout of `OUT`: `results.{json,md,png}`, `results/<row>/seed<N>.json` (each run's test
metrics), `runs/<row>-seed<N>/test/predictions/` (each run's test predictions) and, for the
synthetic benchmark, its ground truth (`data/synthetic/annotations/activitynet.json`); no
checkpoints. Copies go through a temporary folder renamed into place, so an interrupted publish
leaves the earlier copy whole; a destination that is neither new, empty nor an earlier published
copy, or that overlaps `OUT`, is refused (`check_destination`, which `reproduce` runs first).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from datamodules.sources.integrity import write_json_atomic
from lightning_modules.reproduce.scheduler import job_seconds, read_durations

REPOSITORY = Path(__file__).resolve().parents[2]
PUBLISHED = REPOSITORY / "experiments" / "results"
"""Where tables are published (`reproduce TABLE --publish experiments/results/TABLE`)."""


def source_commit(repository: Path = REPOSITORY) -> dict[str, Any]:
    """The commit the code was checked out at and the tracked files that differ from it (a
    result of uncommitted code cannot be traced to a commit; the list says which files, so a
    reader can tell a changed README from changed training code); empty outside a git
    checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(repository), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.rstrip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "uncommitted_changes": [line[3:] for line in changed.splitlines()]}


def machine() -> dict[str, Any]:
    """What the times depend on: the CPU, its cores, the memory, the software."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = round(pages / 2**30, 1)
    except (OSError, ValueError):
        memory = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "system": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def record_invocation(
    out: Path,
    source: dict[str, Any],
    seconds: float,
    jobs_run: int,
    lanes: int,
    threads: int,
    command: str,
) -> None:
    """Append this invocation to `OUT/logs/invocations.json` (only those that ran jobs: a
    rerun that found everything done adds no time); `source` is `source_commit()` taken when
    the invocation started, the code its jobs ran."""
    if jobs_run == 0:
        return
    path = Path(out) / "logs" / "invocations.json"
    entries = _read_list(path)
    entries.append(
        {
            **source,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_seconds": round(seconds, 1),
            "jobs_run": jobs_run,
            "lanes": lanes,
            "threads": threads,
            "load_average_at_end": load_average(),
            "command": command,
            "machine": machine(),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"invocations": entries})


def provenance(out: Path) -> dict[str, Any]:
    """The summary `results.json` carries: the invocations, their total wall time, the time of
    every job (`OUT/logs/durations.json`) and the code now."""
    invocations = _read_list(Path(out) / "logs" / "invocations.json")
    durations = read_durations(Path(out) / "logs" / "durations.json")
    return {
        **source_commit(),
        "wall_seconds": round(sum(i.get("wall_seconds", 0.0) for i in invocations), 1),
        "job_seconds": durations,
        "invocations": invocations,
    }


def published_job_seconds(table: str, published: Path = PUBLISHED) -> dict[str, float]:
    """The job times of the table's published run (none when it has none): `reproduce` orders
    its jobs and tells the time left by them before a run has times of its own."""
    try:
        results = json.loads((published / table / "results.json").read_text())
        return job_seconds(results["provenance"]["job_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def publish(out: Path, destination: Path) -> list[Path]:
    """Copy a finished table's reader files from `out` to `destination` (replaced whole);
    returns the files copied, relative to `destination`."""
    out, destination = Path(out), Path(destination)
    wanted = [out / name for name in ("results.json", "results.md", "results.png")]
    if missing := [path.name for path in wanted if not path.is_file()]:
        raise FileNotFoundError(f"{out} has no {', '.join(missing)}: run the table first")
    check_destination(out, destination)
    wanted += sorted((out / "results").glob("*/seed*.json"))
    wanted += sorted(p for p in (out / "runs").glob("*/test/predictions/*") if p.is_file())
    truth = out / "data" / "synthetic" / "annotations" / "activitynet.json"
    wanted += [truth] if truth.is_file() else []
    staging = destination.with_name(destination.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    for path in wanted:
        target = staging / path.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    old = destination.with_name(destination.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if destination.exists():
        destination.rename(old)
    staging.rename(destination)
    shutil.rmtree(old, ignore_errors=True)
    return [path.relative_to(out) for path in wanted]


def check_destination(out: Path, destination: Path) -> None:
    """Publishing replaces `destination` whole: refuse a folder holding the run itself (its
    checkpoints would go) or anything but an earlier published copy (a user's folder)."""
    run, target = out.resolve(), destination.resolve()
    if target == run or target in run.parents or run in target.parents:
        raise PublishError(
            f"--publish {destination} overlaps the table's output folder {out}: publish to a "
            "folder of its own, e.g. experiments/results/TABLE"
        )
    if destination.exists() and (
        not destination.is_dir()
        or (any(destination.iterdir()) and not (destination / "results.json").is_file())
    ):
        raise PublishError(
            f"--publish {destination} exists and is not a published table (no results.json): "
            "it would be replaced whole; choose a new or empty folder, or move it away"
        )


class PublishError(ValueError):
    """A publish that would destroy files it does not own; the message names the fix."""


def _read_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("invocations") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
