"""Run a table's jobs on several lanes: each job as soon as the jobs it needs are done.

A lane is a worker process with `threads` torch threads. On a CPU, one-thread rows side by side
beat one row with every thread: a training step with two threads on a shared 2-core machine ran
7 times slower than with one (the OpenMP threads wait on each other), and the rows of a table
are independent except for their teachers and prepared features. Every job runs with the same
thread count whatever the number of lanes, so one lane and several give identical results.

Jobs are addressed by name; a lane rebuilds the runner's job list and runs the named job, its
output going to `OUT/logs/<job>.log`. The first failure stops new jobs, lets the running ones
finish (their results are kept for a rerun), and is raised with the failed job's log.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any


class JobFailed(RuntimeError):
    """A job raised; the message names it and the tail of its log."""


def run_in_lanes(
    runner: Any, jobs: Sequence[Any], lanes: int, threads: int, say: Any = print
) -> None:
    """Run `jobs` (each with `name`, `needs`, `done()`) of `runner` on `lanes` worker processes,
    printing a line as each starts and ends, with the count done, the running ones and an ETA."""
    finished = {job.name for job in jobs if job.done()}
    pending = [job for job in jobs if job.name not in finished]
    total, began = len(pending), time.perf_counter()
    table, logs = runner.recipe.table, Path(runner.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[Future, tuple[Any, float]] = {}
    durations: list[float] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(lanes, context, initializer=_lane, initargs=(threads,)) as pool:
        while pending or running:
            for job in [j for j in pending if set(j.needs) <= finished][: lanes - len(running)]:
                pending.remove(job)
                future = pool.submit(run_named_job, runner, job.name, _log(logs, job))
                running[future] = (job, time.perf_counter())
                say(f"[{table}] {job.name} ...", flush=True)
            if not running:
                raise JobFailed(f"jobs {[j.name for j in pending]} wait on jobs that never run")
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                job, start = running.pop(future)
                if future.exception() is not None:
                    pending.clear()  # start nothing new; the running jobs finish and are kept
                    wait(running)
                    raise JobFailed(_failure(job, future.exception(), _log(logs, job)))
                finished.add(job.name)
                durations.append(time.perf_counter() - start)
                left = len(pending) + len(running)
                now = [j.name for j, _ in running.values()]
                say(
                    f"[{table}] {job.name}: {durations[-1]:.0f} s; done {total - left}/{total}, "
                    f"running {now}{_eta(durations, left, lanes)}",
                    flush=True,
                )
    say(f"[{table}] {total} jobs in {time.perf_counter() - began:.0f} s on {lanes} lanes")


def _log(logs: Path, job: Any) -> Path:
    return logs / f"{job.name.replace(' ', '-')}.log"


def _failure(job: Any, error: BaseException | None, log: Path) -> str:
    tail = log.read_text()[-3000:] if log.is_file() else ""
    return f"{job.name} failed: {error}\n--- the end of {log} ---\n{tail}"


def _eta(durations: list[float], left: int, lanes: int) -> str:
    """A rough time left: the jobs left at the mean duration so far, spread over the lanes."""
    if not left:
        return ""
    minutes = sum(durations) / len(durations) * left / lanes / 60
    return f", about {minutes:.0f} min left"


def _lane(threads: int) -> None:
    """A worker process's torch threads, set once."""
    import torch

    torch.set_num_threads(threads)


def run_named_job(runner: Any, name: str, log: Path) -> None:
    """In a lane: the runner's job `name`, its output into `log`."""
    from lightning_modules.reproduce.runner import quiet_lightning

    quiet_lightning()
    job = {job.name: job for job in runner.jobs()}[name]
    with open(log, "w") as handle, contextlib.redirect_stdout(handle):
        with contextlib.redirect_stderr(handle):
            job.run()
