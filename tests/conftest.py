"""Shared fixtures: paths, and the real annotation files of ../shared/realdata when present."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The folder of real benchmark annotation files; tests using it skip in a user's clone."""
    if not REALDATA.is_dir():
        pytest.skip(f"real annotation files not found at {REALDATA} (only in the developers' tree)")
    return REALDATA
