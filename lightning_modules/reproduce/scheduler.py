"""Run a table's jobs on several lanes: each job as soon as the jobs it needs are done.

A lane is a worker process with `threads` torch threads. On a CPU, one-thread rows side by side
beat one row with every thread: a training step with two threads on a shared 2-core machine ran
7 times slower than with one (the OpenMP threads wait on each other), and the rows of a table
are independent except for their teachers and prepared features. Every job runs with the same
thread count whatever the number of lanes, so one lane and several give identical results.

Jobs are addressed by name; a lane rebuilds the runner's job list and runs the named job, its
output going to `OUT/logs/<job>.log`; each job's time is kept in `OUT/logs/durations.json`,
from which a later run (a rerun, more seeds) estimates the time left. The first failure stops
new jobs, lets the running ones finish (their results are kept for a rerun), and is raised with
the failed job's log.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from datamodules.sources.integrity import write_atomic

STOP_GRACE_SECONDS = 120.0
"""How long Ctrl-C waits for the running jobs to stop at a step boundary before killing them."""


class JobFailed(RuntimeError):
    """A job raised; the message names it and the tail of its log."""


def run_in_lanes(
    runner: Any, jobs: Sequence[Any], lanes: int, threads: int, say: Any = print
) -> None:
    """Run `jobs` (each with `name`, `needs`, `done()`) of `runner` on `lanes` worker processes,
    printing a line as each starts and ends, with the count done, the running ones and an ETA."""
    finished = {job.name for job in jobs if job.done()}
    pending = [job for job in start_order(jobs) if job.name not in finished]
    total, began = len(pending), time.perf_counter()
    table, logs = runner.recipe.table, Path(runner.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[Future, tuple[Any, float]] = {}
    context = multiprocessing.get_context("spawn")
    lane_pids = context.SimpleQueue()  # each lane puts its pid: Ctrl-C signals these, no other
    with ProcessPoolExecutor(
        lanes, context, initializer=_lane, initargs=(threads, lane_pids)
    ) as pool:
        try:
            _schedule(pool, runner, pending, running, finished, lanes, say)
        except KeyboardInterrupt:
            _stop(pool, running, _reported(lane_pids), table, say)
            raise
    say(f"[{table}] {total} jobs in {time.perf_counter() - began:.0f} s on {lanes} lanes")


def start_order(jobs: Sequence[Any]) -> list[Any]:
    """The order in which ready jobs start: first those other jobs wait on (teachers, features),
    then those with the longest chain of jobs before them (the students, which end the chains
    and are the longest rows), else as listed. No job's time is needed: on the demo's graph,
    simulated on two lanes with its measured run times, this ends at 492 s against a bound of
    468 s (total work / lanes; the real run: 493 s), where the listed order (each paper's
    baseline, teachers, student) ends at 565 s, waiting on a segment student started last."""
    needs = {job.name: set(job.needs) for job in jobs}
    needed = {name for wanted in needs.values() for name in wanted}
    depth: dict[str, int] = {}

    def chain(name: str) -> int:  # jobs in the longest chain ending at `name`
        if name not in depth:
            depth[name] = 1 + max((chain(n) for n in needs[name] if n in needs), default=0)
        return depth[name]

    return sorted(jobs, key=lambda job: (job.name not in needed, -chain(job.name)))


def _schedule(
    pool: ProcessPoolExecutor,
    runner: Any,
    pending: list[Any],
    running: dict[Future, tuple[Any, float]],
    finished: set[str],
    lanes: int,
    say: Any,
) -> None:
    """Submit each pending job once its needs are finished, until every job has run; `running`
    is shared with the caller, which stops those jobs on Ctrl-C."""
    table, logs = runner.recipe.table, Path(runner.out) / "logs"
    record, total = logs / "durations.json", len(pending)
    durations = read_durations(record)
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
            durations[job.name] = time.perf_counter() - start
            _write_durations(record, durations)
            left = len(pending) + len(running)
            clock = time.perf_counter()
            elapsed = {j.name: clock - began_at for j, began_at in running.values()}
            eta = seconds_left(elapsed, [j.name for j in pending], durations, lanes)
            say(
                f"[{table}] {job.name}: {durations[job.name]:.0f} s; done "
                f"{total - left}/{total}, running {list(elapsed)}"
                + (f", about {eta / 60:.0f} min left" if left and eta is not None else ""),
                flush=True,
            )


def _log(logs: Path, job: Any) -> Path:
    return logs / f"{job.name.replace(' ', '-')}.log"


def _failure(job: Any, error: BaseException | None, log: Path) -> str:
    tail = log.read_text()[-3000:] if log.is_file() else ""
    return f"{job.name} failed: {error}\n--- the end of {log} ---\n{tail}"


def seconds_left(
    running: dict[str, float], pending: Sequence[str], known: dict[str, float], lanes: int
) -> float | None:
    """A rough time left: until the last job ends if each takes its estimate (its own time in an
    earlier run, else its row's at another seed, else the mean of the times known), running jobs
    (name -> seconds so far) finishing first and the pending ones taken in order by the first
    free lane. None when no time is known yet."""
    if not known:
        return None
    mean = sum(known.values()) / len(known)
    by_row: dict[str, float] = {}
    for name, seconds in known.items():
        by_row.setdefault(_row(name), seconds)

    def estimate(name: str) -> float:
        return known.get(name, by_row.get(_row(name), mean))

    free = sorted(max(estimate(name) - spent, 0.0) for name, spent in running.items())
    free += [0.0] * max(lanes - len(free), 0)
    for name in pending:
        free.sort()
        free[0] += estimate(name)
    return max(free)


def _row(job: str) -> str:
    """The row of a job name (`dense_student seed 2` -> `dense_student`)."""
    return re.sub(r" seed \d+$", "", job)


def read_durations(path: Path) -> dict[str, float]:
    """The job times of earlier runs (none when the file is missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def _write_durations(path: Path, durations: dict[str, float]) -> None:
    text = json.dumps({k: round(v, 1) for k, v in durations.items()}, indent=1).encode()
    write_atomic(path, lambda handle: handle.write(text))


def _reported(lane_pids: Any) -> set[int]:
    pids = set()
    while not lane_pids.empty():
        pids.add(lane_pids.get())
    return pids


def _stop(
    pool: ProcessPoolExecutor,
    running: dict[Future, tuple[Any, float]],
    lane_pids: set[int],
    table: str,
    say: Any,
) -> None:
    """Ctrl-C: SIGTERM to the lanes (their fits stop at a step boundary with a checkpoint), wait
    up to `STOP_GRACE_SECONDS` for the running jobs to end, then kill the lanes; start nothing
    new. Only the lanes: other child processes of the caller (a notebook's) are left alone."""
    lanes = [child for child in multiprocessing.active_children() if child.pid in lane_pids]
    names = [job.name for job, _ in running.values()]
    say(
        f"[{table}] interrupted: stopping {names} at their next step (a checkpoint each; rerun "
        "the same command to resume); Ctrl-C again to kill them now",
        flush=True,
    )
    for process in lanes:
        process.terminate()  # SIGTERM
    with contextlib.suppress(KeyboardInterrupt):
        wait(running, timeout=STOP_GRACE_SECONDS)
    for process in lanes:
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _lane(threads: int, lane_pids: Any) -> None:
    """A worker process: its torch threads, set once; Ctrl-C left to the main process, which is
    told this process's pid."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lane_pids.put(os.getpid())
    torch.set_num_threads(threads)


def run_named_job(runner: Any, name: str, log: Path) -> None:
    """In a lane: the runner's job `name`, its output into `log`."""
    from lightning_modules.reproduce.runner import quiet_lightning

    quiet_lightning()
    job = {job.name: job for job in runner.jobs()}[name]
    with open(log, "w") as handle, contextlib.redirect_stdout(handle):
        with contextlib.redirect_stderr(handle):
            job.run()
