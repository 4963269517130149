"""A user's mistake in a config or on the command line is one message with its fix and exit
status 1, never a traceback (`crossdistill --debug ...` adds the traceback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_helpers import BASE, CONFIGS, CONSOLE_SCRIPT, subprocess_env

DATA = str(CONFIGS / "data" / "synthetic.yaml")


def crossdistill(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
    )


@pytest.mark.parametrize(
    ("command", "flag", "message"),
    [
        ("data-check", "--data.init_args.root=/no/such/dataset", "data root /no/such/dataset"),
        ("data-check", "--data.init_args.window_seconds=0", "window_seconds must be > 0"),
        ("data-check", "--data.init_args.task=dens", "data.init_args.task is 'dens'"),
        ("fit", "--data.init_args.root=/no/such/dataset", "data root /no/such/dataset"),
    ],
    ids=["data-check-root", "data-check-window", "data-check-task", "fit-root"],
)
def test_config_mistakes_are_one_message(
    tmp_path: Path, command: str, flag: str, message: str
) -> None:
    configs = ["--config", DATA] if command == "data-check" else BASE
    runs = f"--trainer.default_root_dir={tmp_path / 'runs'}"
    extra = [runs, "--run_name=x"] if command == "fit" else []
    done = crossdistill(tmp_path, command, *configs, flag, *extra)
    assert done.returncode == 1, done.stderr[-2000:]
    assert message in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr and "Given value" not in done.stderr
    if command == "fit":
        debug = crossdistill(tmp_path, "--debug", command, *configs, flag, runs, "--run_name=y")
        assert "Traceback" in debug.stderr and message in debug.stderr


def test_a_model_task_other_than_the_datas_is_one_message(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The data's `task: dense` with a segment detector: the two are named, with the fix, before
    any batch (the segment loss would read targets the dense data does not build)."""
    from tests.cli_helpers import tiny
    from tests.data_helpers import tiny_benchmark

    bench = tiny_benchmark(tmp_path_factory)
    segments = ["--config", str(CONFIGS / "teacher" / "segments_flow.yaml")]
    done = crossdistill(
        tmp_path, "fit", *BASE, *segments, *tiny(bench, tmp_path / "runs"), "--run_name=x"
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "the model's task is SegmentTask (segments) but the data's task is 'dense'" in (
        done.stderr
    )
    assert "Fix: set data.init_args.task: segments" in done.stderr
    assert "Traceback" not in done.stderr
