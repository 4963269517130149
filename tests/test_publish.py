"""A table's provenance (commit, machine, wall time) and the reader's copy of its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_modules.reproduce import publish
from lightning_modules.reproduce.results import markdown


def finished_table(out: Path) -> None:
    """The files `reproduce` leaves: results, per-run metrics, predictions, checkpoints."""
    out.mkdir(parents=True)
    for name in ("results.json", "results.md", "results.png"):
        (out / name).write_text(name)
    for row in ("rgb", "student"):
        (out / "results" / row).mkdir(parents=True)
        (out / "results" / row / "seed0.json").write_text("{}")
        predictions = out / "runs" / f"{row}-seed0" / "test" / "predictions"
        predictions.mkdir(parents=True)
        (predictions / "clips.json").write_text("[]")
        (out / "runs" / f"{row}-seed0" / "checkpoints").mkdir()
        (out / "runs" / f"{row}-seed0" / "checkpoints" / "last.ckpt").write_bytes(b"x" * 100)
    (out / "data" / "synthetic" / "annotations").mkdir(parents=True)
    for name in ("activitynet.json", "charades_testing.csv"):
        (out / "data" / "synthetic" / "annotations" / name).write_text("{}")


def test_publish_copies_what_readers_need_and_replaces_an_earlier_copy(tmp_path: Path) -> None:
    out, destination = tmp_path / "out", tmp_path / "experiments" / "results" / "table"
    finished_table(out)
    destination.mkdir(parents=True)
    (destination / "results.json").write_text("an earlier publication")
    (destination / "stale.json").write_text("from an earlier run")
    copied = publish.publish(out, destination)
    files = sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file())
    assert files == sorted(str(p) for p in copied) == [
        "data/synthetic/annotations/activitynet.json",
        "results.json", "results.md", "results.png",
        "results/rgb/seed0.json", "results/student/seed0.json",
        "runs/rgb-seed0/test/predictions/clips.json",
        "runs/student-seed0/test/predictions/clips.json",
    ]  # fmt: skip
    assert sorted(p.name for p in destination.parent.iterdir()) == ["table"]  # no leftovers


def test_publish_refuses_an_unfinished_table_and_keeps_the_earlier_copy(tmp_path: Path) -> None:
    out, destination = tmp_path / "out", tmp_path / "published"
    (out / "results").mkdir(parents=True)
    destination.mkdir()
    (destination / "results.json").write_text("kept")
    with pytest.raises(FileNotFoundError, match=r"has no results\.json, results\.md"):
        publish.publish(out, destination)
    assert (destination / "results.json").read_text() == "kept"


def test_invocations_that_ran_jobs_add_up_to_the_wall_time(tmp_path: Path) -> None:
    source = publish.source_commit()
    publish.record_invocation(tmp_path, source, 125.0, 10, 2, 1, "crossdistill reproduce t")
    publish.record_invocation(tmp_path, source, 3.0, 0, 2, 1, "reproduce t")  # all done before
    publish.record_invocation(tmp_path, source, 60.0, 2, 1, 1, "reproduce t --jobs 1")
    (tmp_path / "logs" / "durations.json").write_text(json.dumps({"rgb seed 0": 90.0}))
    made = publish.provenance(tmp_path)
    assert made["wall_seconds"] == 185.0 and made["job_seconds"] == {"rgb seed 0": 90.0}
    assert [run["jobs_run"] for run in made["invocations"]] == [10, 2]
    run = made["invocations"][0]
    assert run["machine"]["cores"] >= 1 and run["machine"]["torch"]
    assert len(run["commit"]) == 40 and isinstance(run["uncommitted_changes"], list)
    made["invocations"][0]["uncommitted_changes"] = []
    made["invocations"][1]["uncommitted_changes"] = ["README.md"]
    table = {"title": "T", "data": "synthetic", "seeds": 1, "rows": [], "provenance": made}
    line = markdown(table).splitlines()[-1]
    assert line.startswith(f"Made by commit {run['commit'][:7]}")
    assert "with uncommitted changes to README.md on " in line
    assert "3.1 min wall time in 2 invocation(s), 1 lane(s) of 1 thread(s)" in line


def test_source_commit_names_the_tracked_files_that_differ(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "train.py").write_text("a")
    (tmp_path / "README.md").write_text("a")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert publish.source_commit(tmp_path)["uncommitted_changes"] == []
    (tmp_path / "README.md").write_text("b")
    (tmp_path / "notes.txt").write_text("untracked: not part of the code that ran")
    source = publish.source_commit(tmp_path)
    assert source["uncommitted_changes"] == ["README.md"] and len(source["commit"]) == 40
    assert publish.source_commit(tmp_path / "not_a_repo") == {}


def test_an_interrupted_reproduce_keeps_the_record_of_the_jobs_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C (or a failed job) after two jobs finished: their time stays in the provenance."""
    from lightning_modules.commands.reproduce import main
    from lightning_modules.reproduce.runner import TableRunner

    counts = iter([3, 5])  # jobs done before the run, and when it stopped
    monkeypatch.setattr(TableRunner, "jobs_done", lambda self: next(counts))

    def interrupted(self: TableRunner, lanes: int, threads: int, published: dict) -> None:
        assert published == {}  # a smoke run does not take the published run's times
        raise KeyboardInterrupt

    monkeypatch.setattr(TableRunner, "run", interrupted)
    assert main(["demo", "--smoke", "--out", str(tmp_path), "--jobs", "2"]) == 130
    assert "interrupted after 2 job(s)" in capsys.readouterr().err
    (run,) = publish.provenance(tmp_path)["invocations"]
    assert run["jobs_run"] == 2 and run["lanes"] == 2 and run["wall_seconds"] >= 0
    assert run["command"] == f"crossdistill reproduce demo --smoke --out {tmp_path} --jobs 2"


def test_publish_never_replaces_a_users_folder_or_the_run_itself(tmp_path: Path) -> None:
    """The destination is replaced whole: a folder that is not a published table, the output
    folder and any folder around or inside it are refused, untouched."""
    out = tmp_path / "outputs" / "table"
    finished_table(out)
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for destination in (mine, out, tmp_path / "outputs", out / "published"):
        with pytest.raises(
            publish.PublishError, match=r"--publish .* (is not a published|overlaps)"
        ):
            publish.publish(out, destination)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert (out / "runs" / "rgb-seed0" / "checkpoints" / "last.ckpt").is_file()
    assert not (out / "published").exists()
    (tmp_path / "empty").mkdir()
    assert publish.publish(out, tmp_path / "empty")  # an empty folder is fine


def test_reproduce_refuses_a_bad_publish_folder_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lightning_modules.commands.reproduce import main
    from lightning_modules.reproduce.runner import TableRunner

    def never(self: TableRunner, lanes: int, threads: int) -> None:
        raise AssertionError("trained before checking --publish")

    monkeypatch.setattr(TableRunner, "run", never)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    argv = ["demo", "--smoke", "--out", str(tmp_path / "out"), "--publish", str(mine)]
    assert main(argv) == 2
    assert "is not a published table" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


def test_a_published_runs_job_times_are_read_back(tmp_path: Path) -> None:
    """`reproduce` orders its jobs and gives a first ETA from them; a table never published,
    or a results file without them, gives none."""
    table = tmp_path / "demo"
    table.mkdir()
    results = {"provenance": {"job_seconds": {"clip_rgb seed 0": 59.5, "odd": "x"}}}
    (table / "results.json").write_text(json.dumps(results))
    assert publish.published_job_seconds("demo", tmp_path) == {"clip_rgb seed 0": 59.5}
    assert publish.published_job_seconds("lee23_segments", tmp_path) == {}
    (table / "results.json").write_text('{"provenance": []}')
    assert publish.published_job_seconds("demo", tmp_path) == {}
