"""Preemption: a real `crossdistill fit` signalled (SIGUSR1/SIGTERM) mid-epoch writes `last.ckpt`
at that step, exits with status 75, resumes with `--ckpt_path last` from that step (the batches
before it are not trained again) and ends with the weights and metrics of an uninterrupted run
of the same seed."""

from __future__ import annotations

import csv
import os
import re
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

SMOKE = REPO_ROOT / "configs" / "smoke" / "teacher.yaml"
EPOCHS = 3


def marker(hold_at: int | None = None) -> str:
    """The step printer; `hold_at`: the run waits at that step until the signal has arrived."""
    args = "" if hold_at is None else f", init_args: {{hold_at: {hold_at}}}"
    return f"{{class_path: tests.fault_helpers.StepMarker{args}}}"


def env(tmp: Path) -> dict[str, str]:
    return {**subprocess_env(tmp), "PYTHONPATH": str(REPO_ROOT)}  # for the test callback


def command(bench: Path, runs: Path, name: str, *extra: str) -> list[str]:
    """The smoke teacher, 3 epochs of about 7 steps (batches of 2), printing every step."""
    return [
        str(CONSOLE_SCRIPT), "fit", "--config", str(SMOKE), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={runs}",
        "--data.init_args.batch_size=2", f"--trainer.max_epochs={EPOCHS}",
        "--trainer.enable_model_summary=false", f"--run_name={name}", *extra,
    ]  # fmt: skip


def run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, env=env(tmp), cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def interrupt(args: list[str], tmp: Path, step: int, signum: int, group: bool = False) -> str:
    """Start the run, send `signum` once its stderr shows global step `step` (to its whole
    process group, DataLoader workers included, as `scancel` and systemd do, with `group`);
    its stderr."""
    log = tmp / "interrupted.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            args, stderr=handle, stdout=handle, env=env(tmp), cwd=REPO_ROOT,
            start_new_session=group,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while not re.search(rf"crossdistill-test: epoch \d+ step {step}\n", log.read_text()):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never reached the step"
                time.sleep(0.1)
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
            status = process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
    text = log.read_text()
    assert status == PREEMPTED_EXIT_CODE, text[-3000:]
    return text


def steps_run(log: str) -> list[int]:
    """Global steps after the training steps a log shows, in order."""
    return [int(s) for s in re.findall(r"crossdistill-test: epoch \d+ step (\d+)", log)]


@pytest.fixture(scope="module")
def uninterrupted(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run(command(bench, runs, "straight", f"--trainer.callbacks+={marker()}"), runs)
    return runs / "straight"


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def final_val(run_dir: Path) -> str:
    with (run_dir / "metrics.csv").open() as handle:
        return [row["val/frame_mAP"] for row in csv.DictReader(handle) if row["val/frame_mAP"]][-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "hold_at", "stop_at", "workers", "group"),
    [
        (signal.SIGTERM, 2, 2, 0, False),  # in the first epoch, before any epoch-end last.ckpt
        (signal.SIGUSR1, 10, 10, 0, False),  # SLURM's warning signal, in the second epoch
        # at the first epoch's last step: stops one step later, after its validation; with
        # two DataLoader workers (the reference run loads in the main process)
        (signal.SIGTERM, "last", "next", 2, False),
        # to the whole process group (scancel, systemd): the workers get it too
        (signal.SIGTERM, 4, 4, 2, True),
    ],
    ids=["SIGTERM-epoch0", "SIGUSR1-epoch1", "SIGTERM-epoch-end-workers", "SIGTERM-group"],
)
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(
    signum: int,
    hold_at: int | str,
    stop_at: int | str,
    workers: int,
    group: bool,
    bench: Path,
    uninterrupted: Path,
    tmp_path: Path,
) -> None:
    straight = checkpoint(uninterrupted)
    assert straight["epoch"] == EPOCHS - 1
    total = straight["global_step"]
    per_epoch = total // EPOCHS
    hold = per_epoch if hold_at == "last" else int(hold_at)
    stop = hold + 1 if stop_at == "next" else int(stop_at)
    runs = tmp_path / "runs"
    args = command(
        bench, runs, "p", f"--trainer.callbacks+={marker(hold)}",
        f"--data.init_args.num_workers={workers}",
    )  # fmt: skip
    text = interrupt(args, tmp_path, hold, signum, group)
    assert f"received {signal.Signals(signum).name}" in text
    assert "--ckpt_path last" in text
    assert steps_run(text)[-1] == stop

    # the checkpoint of the step boundary: within an epoch, with the loader's position
    mid = checkpoint(runs / "p")
    assert mid["global_step"] == stop and stop % per_epoch != 0
    epoch, taken = divmod(stop, per_epoch)
    assert mid["epoch"] == epoch
    assert mid["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": epoch, "taken": 2 * taken}
    ]

    # the resumed run trains the remaining steps only, and ends where the straight one does
    resume = [str(CONSOLE_SCRIPT), "fit", "--config", str(runs / "p" / "config.yaml")]
    done = run([*resume, "--ckpt_path", "last"], tmp_path)
    assert steps_run(done.stderr) == list(range(stop + 1, total + 1))
    resumed = checkpoint(runs / "p")
    assert (resumed["epoch"], resumed["global_step"]) == (straight["epoch"], total)
    weights, reference = resumed["state_dict"], straight["state_dict"]
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
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


@pytest.mark.slow
def test_a_signal_before_a_mid_epoch_validation_keeps_the_validation(
    bench: Path, tmp_path: Path
) -> None:
    """With validation every 2 batches, a signal at step 4 (a validation is due after it):
    Lightning resumes a checkpoint of step 4 past that validation, which would be lost for
    good, so the run validates and stops one step later."""
    runs = tmp_path / "runs"
    args = command(
        bench, runs, "v", f"--trainer.callbacks+={marker(4)}", "--trainer.val_check_interval=2"
    )
    text = interrupt(args, tmp_path, 4, signal.SIGTERM)
    assert steps_run(text)[-1] == 5 and checkpoint(runs / "v")["global_step"] == 5
    with (runs / "v" / "metrics.csv").open() as handle:
        validated = [int(r["step"]) for r in csv.DictReader(handle) if r["val/frame_mAP"]]
    assert validated == [1, 3]  # Lightning logs a validation at the step before it (0-based)
