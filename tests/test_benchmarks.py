"""The benchmark scripts of `experiments/benchmarks/` that have no other test: each runs in its
tiny mode (a check that the script works, never a measurement)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.data_helpers import copy_benchmark


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu_in_tiny_mode(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both students train a few bf16-mixed steps from one batch and from the loader; the
    line of each names its throughputs, their ratio and the peak memory."""
    from experiments.benchmarks.gpu import main as benchmark

    root = copy_benchmark(bench, tmp_path / "bench")  # the tiny benchmark: nothing generated
    assert benchmark(["--tiny", "--root", str(root), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "generating" not in out and "bf16-mixed" in out
    for row in ("dense RGB student", "clip RGB student"):
        line = next(line for line in out.splitlines() if line.startswith(row))
        numbers = re.search(
            r"compute +([\d.]+) steps/s, with loader +([\d.]+) steps/s .* peak memory +(\d+) MiB",
            line,
        )
        assert numbers is not None, line
        assert all(float(value) > 0 for value in numbers.groups()), line
