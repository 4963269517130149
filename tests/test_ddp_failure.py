"""DDP on two CPU processes (gloo): when one rank raises, the other does not hang; the run ends
with the original error and a non-zero status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_helpers import CONSOLE_SCRIPT, subprocess_env
from tests.conftest import REPO_ROOT

SMOKE = REPO_ROOT / "configs" / "smoke" / "teacher.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_a_failing_rank_ends_the_whole_run(rank: int, bench: Path, tmp_path: Path) -> None:
    fail = f"{{class_path: tests.fault_helpers.FailOnRank, init_args: {{rank: {rank}, step: 1}}}}"
    command = [
        str(CONSOLE_SCRIPT), "fit", "--config", str(SMOKE), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={tmp_path / 'runs'}",
        "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=1",
        "--trainer.enable_model_summary=false", f"--trainer.callbacks+={fail}",
    ]  # fmt: skip
    env = {**subprocess_env(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    # a hang would run into this limit (and fail the test); the run itself takes seconds
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
    )
    assert done.returncode != 0
    assert f"RuntimeError: injected failure on rank {rank}" in done.stderr
