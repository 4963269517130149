"""Preemption: a real `crossdistill fit` stopped by SIGUSR1/SIGTERM mid-epoch exits with status
75, resumes with `--ckpt_path last` and ends with the weights and metrics of an uninterrupted run
of the same seed."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from lightning_modules.runs.directory import locate_run
from lightning_modules.runs.preemption import PREEMPTED_EXIT_CODE
from tests.cli_helpers import CONSOLE_SCRIPT, subprocess_env
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark

SMOKE = REPO_ROOT / "configs" / "smoke" / "teacher.yaml"
MARKER = "tests.fault_helpers.StepMarker"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_benchmark(tmp_path_factory)


def env(tmp: Path) -> dict[str, str]:
    return {**subprocess_env(tmp), "PYTHONPATH": str(REPO_ROOT)}  # for the test callback


def command(bench: Path, runs: Path, name: str) -> list[str]:
    """The smoke teacher, 3 epochs of about 7 steps (batches of 2), printing every step."""
    return [
        str(CONSOLE_SCRIPT), "fit", "--config", str(SMOKE), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={runs}",
        "--data.init_args.batch_size=2", "--trainer.max_epochs=3",
        "--trainer.enable_model_summary=false", f"--trainer.callbacks+={MARKER}",
        f"--run_name={name}",
    ]  # fmt: skip


def run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, env=env(tmp), cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def interrupt(args: list[str], tmp: Path, at: str, signum: int) -> str:
    """Start the run, send `signum` once its stderr shows the step marker `at`; its stderr."""
    log = tmp / "interrupted.log"
    with log.open("w") as handle:
        process = subprocess.Popen(args, stderr=handle, stdout=handle, env=env(tmp), cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + 300
            while at not in log.read_text():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never reached the step"
                time.sleep(0.1)
            process.send_signal(signum)
            status = process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
    text = log.read_text()
    assert status == PREEMPTED_EXIT_CODE, text[-3000:]
    return text


@pytest.fixture(scope="module")
def uninterrupted(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run(command(bench, runs, "straight"), runs)
    return runs / "straight"


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 2
    return checkpoint["state_dict"]


def final_val(run_dir: Path) -> str:
    with (run_dir / "metrics.csv").open() as handle:
        return [row["val/frame_mAP"] for row in csv.DictReader(handle) if row["val/frame_mAP"]][-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "at"),
    [
        (signal.SIGUSR1, "epoch 1 step 8"),  # SLURM's warning signal, in the second epoch
        (signal.SIGTERM, "epoch 0 step 2"),  # before the first last.ckpt: starts over
    ],
    ids=["SIGUSR1-epoch1", "SIGTERM-epoch0"],
)
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(
    signum: int, at: str, bench: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    text = interrupt(command(bench, runs, "p"), tmp_path, at, signum)
    assert f"received {signal.Signals(signum).name}" in text
    assert "--ckpt_path last" in text
    stopped_in = int(text.split("stopped by ")[1].split("global step ")[1].split(";")[0])
    assert stopped_in < 21  # mid-run, not at the end
    resume = [str(CONSOLE_SCRIPT), "fit", "--config", str(runs / "p" / "config.yaml")]
    run([*resume, "--ckpt_path", "last"], tmp_path)
    resumed, straight = last_weights(runs / "p"), last_weights(uninterrupted)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert final_val(runs / "p") == final_val(uninterrupted)


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.yaml").touch()
    location = locate_run("fit", "a", tmp_path, "last", {})
    assert location.resumed and location.ckpt_path is None
    (tmp_path / "a" / "checkpoints").mkdir()
    (tmp_path / "a" / "checkpoints" / "last.ckpt").touch()
    assert locate_run("fit", "a", tmp_path, "last", {}).ckpt_path == str(
        tmp_path / "a" / "checkpoints" / "last.ckpt"
    )


def test_signal_handlers_are_put_back_after_fit() -> None:
    """The CLI in-process (tests, notebooks) must not keep its handlers."""
    before = signal.getsignal(signal.SIGUSR1)
    from lightning_modules.runs.preemption import Preemption

    callback = Preemption(Path("last.ckpt"))
    callback._install_handlers()
    assert signal.getsignal(signal.SIGUSR1) == callback._handle
    callback.teardown(None, None, "fit")  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGUSR1) == before
