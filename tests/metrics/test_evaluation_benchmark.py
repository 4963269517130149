"""The benchmark script runs, and its two implementations and the whole `evaluate` command
agree (it exits 1 otherwise)."""

from __future__ import annotations

from experiments.benchmarks.evaluation import main


def test_small_benchmark_agrees(capsys) -> None:
    assert main(["--small", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "max |AP difference|" in out
    assert "whole command:" in out and "load average" in out  # the command scored the same
