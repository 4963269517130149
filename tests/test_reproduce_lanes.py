"""`reproduce --jobs N`: jobs run side by side, each once the jobs it needs are done, with the
same results as one lane."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lightning_modules.reproduce.recipe import load_recipe
from lightning_modules.reproduce.runner import TableRunner
from lightning_modules.reproduce.scheduler import (
    JobFailed,
    job_estimates,
    run_in_lanes,
    seconds_left,
    start_order,
)


def test_jobs_name_what_they_read() -> None:
    """Rows need their teachers' first seed and the benchmark; rows on the table's features
    need every preparation step, rows on the frames none; a fit step needs its pool, an
    extraction the job it extracts from."""
    runner = TableRunner(load_recipe("dai21_dense"), Path("unused"))
    needs = {job.name: set(job.needs) for job in runner.jobs()}
    prepare = {step.name for step in runner.recipe.prepare}
    assert needs["synthetic benchmark"] == needs["pretraining pool"] == set()
    assert needs["backbone_rgb"] == {"pretraining pool"}
    assert needs["features_rgb"] == {"synthetic benchmark", "backbone_rgb"}
    assert needs["rgb seed 0"] == {"synthetic benchmark", *prepare}
    assert needs["dai_flow_pose seed 1"] == {
        "synthetic benchmark", *prepare, "flow seed 0", "pose seed 0"
    }  # fmt: skip
    assert needs["dai_frames seed 0"] == {
        "synthetic benchmark", "flow_frames seed 0", "pose_frames seed 0"
    }  # fmt: skip
    demo = {job.name: set(job.needs) for job in TableRunner(load_recipe("demo"), Path("u")).jobs()}
    assert demo["features_rgb"] == {"synthetic benchmark", "clip_rgb seed 0"}
    assert demo["clip_rgb seed 0"] == demo["dense_rgb seed 0"] == {"synthetic benchmark"}
    assert {"features_rgb", "features_flow"} <= demo["seg_rgb seed 0"]


@dataclass(frozen=True)
class _Job:
    name: str
    needs: tuple[str, ...]
    folder: Path

    def done(self) -> bool:
        return (self.folder / f"{self.name}.end").is_file()

    def run(self) -> None:
        for need in self.needs:
            assert (self.folder / f"{need}.end").is_file(), need
        (self.folder / f"{self.name}.start").write_text(str(time.time()))
        if self.name == "broken":
            raise ValueError("a broken job")
        if self.name.startswith("long"):  # a fit: stops on SIGTERM, as preemption makes it
            signal.signal(signal.SIGTERM, self.preempted)
            (self.folder / f"{self.name}.pid").write_text(str(os.getpid()))
            time.sleep(60.0)
        time.sleep(1.0)
        (self.folder / f"{self.name}.end").write_text(str(time.time()))

    def preempted(self, signum: int, frame: object) -> None:
        (self.folder / f"{self.name}.stopped").write_text("")
        raise SystemExit(75)


@dataclass(frozen=True)
class _Recipe:
    table: str = "fake"


@dataclass(frozen=True)
class _Runner:
    """What the scheduler needs of a TableRunner: `out`, `recipe.table` and `jobs()`."""

    out: Path
    plan: tuple[tuple[str, tuple[str, ...]], ...]
    recipe: _Recipe = field(default_factory=_Recipe)

    def jobs(self) -> list[_Job]:
        return [_Job(name, needs, self.out) for name, needs in self.plan]


def _quiet(*args: object, **kwargs: object) -> None:
    pass


def test_lanes_run_independent_jobs_side_by_side_after_what_they_need(tmp_path: Path) -> None:
    plan = (("a", ()), ("b", ()), ("c", ("a",)), ("d", ("a", "b")))
    runner = _Runner(tmp_path, plan)
    lines: list[str] = []
    published = {"a": 120.0, "b": 60.0, "c": 60.0, "d": 60.0}  # a published run's job times
    say = lambda line, **_: lines.append(line)  # noqa: E731
    run_in_lanes(runner, runner.jobs(), 2, 1, say=say, published=published)
    assert lines[0] == "[fake] 4 jobs on 2 lanes, about 3 min"  # a, then c and d after b
    times = {
        name: (float((tmp_path / f"{name}.start").read_text()),
               float((tmp_path / f"{name}.end").read_text()))
        for name, _ in plan
    }  # fmt: skip
    assert times["a"][0] < times["b"][1] and times["b"][0] < times["a"][1]  # side by side
    assert times["c"][0] >= times["a"][1] and times["d"][0] >= max(times["a"][1], times["b"][1])
    assert any("done 4/4" in line for line in lines) and " s left" in " ".join(lines)
    assert (tmp_path / "logs" / "a.log").is_file()
    recorded = json.loads((tmp_path / "logs" / "durations.json").read_text())
    assert sorted(recorded) == ["a", "b", "c", "d"] and all(v >= 1.0 for v in recorded.values())


def test_jobs_others_wait_on_start_first_then_the_ends_of_the_longest_chains() -> None:
    """The demo's graph: teachers, clip backbones and features before every other job; then the
    segment student (the end of the longest chain: benchmark, clip model, features, flow
    teacher, student); the dense RGB baseline (right after the benchmark) last."""
    runner = TableRunner(load_recipe("demo"), Path("unused"))
    order = [job.name for job in start_order(runner.jobs())]
    needed = {name for job in runner.jobs() for name in job.needs}
    assert set(order[: len(needed)]) == needed
    assert order[len(needed)] == "seg_student seed 0" and order[-1] == "dense_rgb seed 0"
    assert sorted(order) == sorted(job.name for job in runner.jobs())


def test_time_left_runs_the_estimates_over_the_lanes() -> None:
    """Each job at its own earlier time, else its row's at another seed, else the mean; a
    running job for what is left of its estimate; pending jobs on the first free lane."""
    known = {"rgb seed 0": 100.0, "student seed 0": 300.0, "teacher seed 0": 200.0}
    estimate = job_estimates(known, {})
    # the last job alone: its estimate minus what it has run, not the mean over two lanes
    assert seconds_left({"student seed 0": 50.0}, [], estimate, 2) == 250.0
    # seeds 1 of each row at their seed 0's time: lanes [0 + 100 + 200, 0 + 300]
    pending = ["rgb seed 1", "student seed 1", "teacher seed 1"]
    assert seconds_left({}, pending, estimate, 2) == 300.0
    # an unknown row at the mean (200), after the running student's 300 - 100 left
    assert seconds_left({"student seed 0": 100.0}, ["new seed 0"], estimate, 1) == 400.0


def test_published_times_estimate_what_this_run_has_not_timed_yet() -> None:
    """The published run's times, scaled by how much slower this machine ran the jobs both
    ran; the job's own time first; a row neither knows at the mean of this run's times."""
    published = {"teacher seed 0": 100.0, "student seed 0": 300.0, "student seed 1": 330.0}
    estimate = job_estimates({}, published)
    assert estimate("student seed 0") == 300.0 and estimate("student seed 2") == 300.0
    estimate = job_estimates({"teacher seed 0": 150.0}, published)  # 1.5x slower here
    assert estimate("teacher seed 0") == 150.0 and estimate("teacher seed 4") == 150.0
    assert estimate("student seed 1") == 495.0 and estimate("student seed 7") == 450.0
    assert estimate("baseline seed 0") == 150.0


def test_with_times_the_jobs_on_the_longest_path_to_the_end_start_first() -> None:
    """`quick` gates a long job, `slow` a short one: `quick` starts first when the times are
    known (110 s of work wait on it, 55 s on `slow`); without times the rule cannot tell them
    apart and keeps the listed order."""
    jobs = [_Job(name, needs, Path("unused")) for name, needs in
            (("slow", ()), ("quick", ()), ("long", ("quick",)), ("short", ("slow",)))]  # fmt: skip
    seconds = {"slow": 50.0, "quick": 10.0, "long": 100.0, "short": 5.0}
    assert [job.name for job in start_order(jobs)] == ["slow", "quick", "long", "short"]
    order = [job.name for job in start_order(jobs, seconds.__getitem__)]
    assert order == ["quick", "long", "slow", "short"]


def test_a_failed_job_stops_new_ones_and_names_its_log(tmp_path: Path) -> None:
    runner = _Runner(tmp_path, (("broken", ()), ("after", ("broken",))))
    with pytest.raises(JobFailed, match=r"broken failed: a broken job(.|\n)*logs/broken\.log"):
        run_in_lanes(runner, runner.jobs(), 2, 1, say=_quiet)
    assert not (tmp_path / "after.start").exists()


def test_ctrl_c_stops_the_running_jobs_and_starts_no_more(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group: the lanes ignore it (Lightning
    there would catch it and go on), the main process sends the running jobs SIGTERM (a fit's
    preemption stop, with a checkpoint), starts nothing new and raises KeyboardInterrupt. A
    child process of the caller's own (a notebook's) is not a lane and is left running."""
    runner = _Runner(tmp_path, (("long1", ()), ("long2", ()), ("after", ("long1",))))
    lines: list[str] = []
    bystander = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60.0,))
    bystander.start()

    def ctrl_c() -> None:
        pids = [tmp_path / f"long{n}.pid" for n in (1, 2)]
        while not all(pid.is_file() and pid.read_text() for pid in pids):
            time.sleep(0.05)
        for pid in pids:
            os.kill(int(pid.read_text()), signal.SIGINT)
        time.sleep(0.5)  # a lane that took it would fail its job now
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_in_lanes(runner, runner.jobs(), 2, 1, say=lambda line, **_: lines.append(line))
    assert (tmp_path / "long1.stopped").is_file() and (tmp_path / "long2.stopped").is_file()
    assert not list(tmp_path.glob("*.end")) and not (tmp_path / "after.start").exists()
    assert "interrupted: stopping ['long1', 'long2']" in lines[-1]
    assert bystander.is_alive()
    bystander.kill()


@pytest.mark.slow
def test_two_lanes_give_the_results_of_one(tmp_path: Path) -> None:
    """The demo's dense student with its two teachers (side by side on two lanes) in smoke
    mode: every result file equal, one lane (this process) against two (worker processes)."""
    from lightning_modules.commands.reproduce import main

    outs = {lanes: tmp_path / f"lanes{lanes}" for lanes in (1, 2)}
    for lanes, out in outs.items():
        argv = ["demo", "--smoke", "--rows", "dense_student", "--out", str(out)]
        argv += ["--jobs", str(lanes)]
        assert main(argv) == 0
    one, two = ({p.relative_to(o): json.loads(p.read_text())["metrics"]
                 for p in (o / "results").rglob("seed*.json")} for o in outs.values())  # fmt: skip
    assert one == two and len(one) == 3  # dense_flow, dense_pose, dense_student
    assert (outs[2] / "logs" / "dense_student-seed-0.log").is_file()
