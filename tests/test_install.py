"""The installed console script answers, and lists every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")


def test_console_script_lists_commands() -> None:
    assert CONSOLE_SCRIPT.exists(), "the console script is not installed: run `make install`"
    out = subprocess.run(
        [CONSOLE_SCRIPT, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("fit", "validate", "test", "predict", "synthetic"):
        assert f"  {command}" in out


def test_unknown_command_fails_with_usage() -> None:
    result = subprocess.run([CONSOLE_SCRIPT, "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown command 'no-such-command'" in result.stderr


def test_torchvision_video_models_run_beside_the_pinned_torch() -> None:
    """The tested pins let torchvision in (beside torch 2.13.0 it failed to import: `operator
    torchvision::nms does not exist`): its video models build and run on a clip."""
    import torch
    from torchvision.models.video import r3d_18

    model = r3d_18(weights=None, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 4, 32, 32))
    assert logits.shape == (1, 5)
