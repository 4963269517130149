"""The installed console script answers, and lists every command."""

from __future__ import annotations

import shutil
import subprocess


def test_console_script_lists_commands() -> None:
    exe = shutil.which("crossdistill")
    assert exe is not None, "the console script is not installed: run `make install`"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("fit", "validate", "test", "predict", "synthetic"):
        assert f"  {command}" in out


def test_unknown_command_fails_with_usage() -> None:
    result = subprocess.run(["crossdistill", "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown command 'no-such-command'" in result.stderr
