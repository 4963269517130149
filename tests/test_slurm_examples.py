"""The multi-node launch examples are valid bash and their crossdistill flags parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = sorted((REPO_ROOT / "experiments" / "slurm").glob("*.s*"))
CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_launch_script_is_valid_bash(script: Path) -> None:
    subprocess.run(["bash", "-n", script], check=True)


def test_launch_flags_parse_without_a_gpu() -> None:
    """The flags both scripts pass, dry-run with --print_config (nothing is instantiated)."""
    result = subprocess.run(
        [CONSOLE_SCRIPT, "fit", "--config", "configs/data/synthetic_features.yaml",
         "--config", "configs/teacher/dense_features_flow.yaml", "--trainer.accelerator=gpu",
         "--trainer.devices=4", "--trainer.num_nodes=2", "--trainer.strategy=ddp",
         "--trainer.precision=bf16-mixed", "--run_name=slurm-1", "--print_config"],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "num_nodes: 2" in result.stdout and "precision: bf16-mixed" in result.stdout
