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
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from datamodules.sources.integrity import write_atomic

STOP_GRACE_SECONDS = 120.0
"""How long Ctrl-C waits for the running jobs to stop at a step boundary before killing them."""


class JobFailed(RuntimeError):
    """A job raised; the message names it and the tail of its log."""


def run_in_lanes(
    runner: Any,
    jobs: Sequence[Any],
    lanes: int,
    threads: int,
    say: Any = print,
    published: dict[str, float] | None = None,
) -> None:
    """Run `jobs` (each with `name`, `needs`, `done()`) of `runner` on `lanes` worker processes,
    printing a line as each starts and ends, with the count done, the running ones and an ETA.
    `published`: the job times of the table's published run (`publish.published_job_seconds`),
    which order the jobs and estimate the time left before this run has times of its own."""
    table, logs = runner.recipe.table, Path(runner.out) / "logs"
    published, known = published or {}, read_durations(logs / "durations.json")
    estimate = job_estimates(known, published) if known or published else None
    finished = {job.name for job in jobs if job.done()}
    pending = [job for job in start_order(jobs, estimate) if job.name not in finished]
    total, began = len(pending), time.perf_counter()
    logs.mkdir(parents=True, exist_ok=True)
    if estimate is not None and pending:
        eta = seconds_left({}, [job.name for job in pending], estimate, lanes)
        say(f"[{table}] {total} jobs on {lanes} lanes, {_about(eta)}", flush=True)
    running: dict[Future, tuple[Any, float]] = {}
    context = multiprocessing.get_context("spawn")
    lane_pids = context.SimpleQueue()  # each lane puts its pid: Ctrl-C signals these, no other
    with ProcessPoolExecutor(
        lanes, context, initializer=_lane, initargs=(threads, lane_pids)
    ) as pool:
        try:
            _schedule(pool, runner, pending, running, finished, known, lanes, say, published)
        except KeyboardInterrupt:
            _stop(pool, running, _reported(lane_pids), table, say)
            raise
    say(f"[{table}] {total} jobs in {time.perf_counter() - began:.0f} s on {lanes} lanes")


def start_order(jobs: Sequence[Any], estimate: Callable[[str], float] | None = None) -> list[Any]:
    """The order in which ready jobs start. With time estimates: the longest time from a job's
    start to the end of the last job that waits on it first (list scheduling on the critical
    path). Without (a first run of a table never published): first the jobs others wait on
    (teachers, features), then those with the longest chain of jobs before them (the students,
    which end the chains and are the longest rows). The demo on two lanes, simulated with its
    measured run times: 443 s with estimates, 446 s without, 506 s in listed order (each
    paper's baseline, teachers, student: a segment student started last); the bound, total work
    over lanes, is 428 s. Real runs, the same code: 448 s of jobs with the published times."""
    needs = {job.name: set(job.needs) for job in jobs}
    waiting = {name: [other for other, wanted in needs.items() if name in wanted] for name in needs}
    if estimate is not None:
        tail: dict[str, float] = {}

        def to_end(name: str) -> float:  # seconds from its start to the end of its last waiter
            if name not in tail:
                tail[name] = estimate(name) + max(map(to_end, waiting[name]), default=0.0)
            return tail[name]

        return sorted(jobs, key=lambda job: -to_end(job.name))
    depth: dict[str, int] = {}

    def chain(name: str) -> int:  # jobs in the longest chain ending at `name`
        if name not in depth:
            depth[name] = 1 + max((chain(n) for n in needs[name] if n in needs), default=0)
        return depth[name]

    return sorted(jobs, key=lambda job: (not waiting[job.name], -chain(job.name)))


def job_estimates(known: dict[str, float], published: dict[str, float]) -> Callable[[str], float]:
    """Seconds a job is expected to take: its own time in an earlier run of this output folder,
    else its row's at another seed, else its (or its row's) time in the published run scaled by
    how much slower this machine was on the jobs both ran, else the mean of the times known
    (at least one time, in `known` or `published`)."""
    shared = [name for name in known if name in published]
    speed = sum(known[n] for n in shared) / sum(published[n] for n in shared) if shared else 1.0
    times = known or {name: seconds * speed for name, seconds in published.items()}
    mean = sum(times.values()) / len(times)
    own_rows, published_rows = _by_row(known), _by_row(published)

    def estimate(name: str) -> float:
        row = _row(name)
        if name in known or row in own_rows:
            return known.get(name, own_rows.get(row, mean))
        if name in published or row in published_rows:
            return speed * published.get(name, published_rows.get(row, 0.0))
        return mean

    return estimate


def _by_row(times: dict[str, float]) -> dict[str, float]:
    rows: dict[str, float] = {}
    for name, seconds in times.items():
        rows.setdefault(_row(name), seconds)
    return rows


def _schedule(
    pool: ProcessPoolExecutor,
    runner: Any,
    pending: list[Any],
    running: dict[Future, tuple[Any, float]],
    finished: set[str],
    durations: dict[str, float],
    lanes: int,
    say: Any,
    published: dict[str, float],
) -> None:
    """Submit each pending job once its needs are finished, until every job has run; `running`
    is shared with the caller, which stops those jobs on Ctrl-C; `durations` (those of
    `OUT/logs/durations.json`) gets each finished job's time and is written back."""
    table, logs = runner.recipe.table, Path(runner.out) / "logs"
    record, total = logs / "durations.json", len(pending)
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
            estimate = job_estimates(durations, published)
            eta = seconds_left(elapsed, [j.name for j in pending], estimate, lanes)
            say(
                f"[{table}] {job.name}: {durations[job.name]:.0f} s; done "
                f"{total - left}/{total}, running {list(elapsed)}"
                + (f", {_about(eta)} left" if left else ""),
                flush=True,
            )


def _about(seconds: float) -> str:
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def _log(logs: Path, job: Any) -> Path:
    return logs / f"{job.name.replace(' ', '-')}.log"


def _failure(job: Any, error: BaseException | None, log: Path) -> str:
    tail = log.read_text()[-3000:] if log.is_file() else ""
    return f"{job.name} failed: {error}\n--- the end of {log} ---\n{tail}"


def seconds_left(
    running: dict[str, float], pending: Sequence[str], estimate: Callable[[str], float], lanes: int
) -> float:
    """A rough time left: until the last job ends if each takes its `estimate`, running jobs
    (name -> seconds so far) finishing first and the pending ones taken in order by the first
    free lane."""
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
        return job_seconds(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def job_seconds(data: object) -> dict[str, float]:
    """Job name -> seconds from a JSON mapping (`durations.json`, or a published table's
    `provenance.job_seconds`); entries that are not numbers are left out."""
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
