"""The suite's own footprint: a passed test's files go at its teardown, a failed test's stay.

The end-to-end tests train the shipped configs at their real model sizes and write checkpoints of
up to 4 GB a test; kept until the session ended, they filled a CI machine's disk (25 GB).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

TWO_TESTS = """
def test_passes(tmp_path):
    (tmp_path / "checkpoint.ckpt").write_bytes(b"weights")

def test_fails(tmp_path):
    (tmp_path / "checkpoint.ckpt").write_bytes(b"weights")
    assert False, "kept for a look"
"""


def test_a_passed_tests_files_are_removed_and_a_failed_tests_kept(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text(TWO_TESTS)
    basetemp = tmp_path / "basetemp"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-c", str(PROJECT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    command += ["--basetemp", str(basetemp), str(tmp_path / "test_two.py")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    left = sorted(path.name for path in basetemp.iterdir() if not path.is_symlink())
    assert left == ["test_fails0"], left
    assert (basetemp / "test_fails0" / "checkpoint.ckpt").is_file()
