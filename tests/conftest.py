"""Shared fixtures: the tiny synthetic benchmark, and the real annotation files of
../shared/realdata when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data_helpers import tiny_benchmark

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The folder of real benchmark annotation files; tests using it skip in a user's clone."""
    if not REALDATA.is_dir():
        pytest.skip(f"real annotation files not found at {REALDATA} (only in the developers' tree)")
    return REALDATA


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic benchmark, generated once per session; read only (copy it to change
    files, with `copy_benchmark`)."""
    return tiny_benchmark(tmp_path_factory)
