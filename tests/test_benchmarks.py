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


@pytest.mark.slow
def test_inference_benchmark_runs_in_tiny_mode(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The RGB student and the two-stream model with DIS and with TV-L1 flow, from the same
    decoded 64x64 frames of the tiny benchmark, resized down to 32 (never up); each path's
    line gives its times per video and per frame by stage, and both flow methods are costed."""
    from experiments.benchmarks.inference import main as benchmark

    args = ["--root", str(bench), "--videos", "1", "--frames", "6", "--repeats", "1"]
    assert benchmark([*args, "--size", "32", "--window", "4", "--tvl1-frames", "2"]) == 0
    out = capsys.readouterr().out
    number = r"([\d.]+)"
    for path in ("RGB student", "two-stream \\+ DIS", "two-stream \\+ TV-L1"):
        line = re.search(
            rf"^cpu {path}: {number} ms per video, {number} ms per frame \({number} frames/s\); "
            rf"per frame: decode \+ RGB tensor {number} ms, flow \+ flow tensor {number} ms, "
            rf"model {number} ms$",
            out,
            re.MULTILINE,
        )
        assert line is not None, (path, out)
    for method in ("DIS", "TV-L1"):
        assert f"ratio (cpu): two-stream + {method} / RGB student = " in out
    costs = re.search(r"DIS ([\d.]+) ms \(on all 5 pairs\), TV-L1 ([\d.]+) ms", out)
    assert costs is not None and "first 2 frame pairs of each video (2 of 5 pairs)" in out
    assert "decoded at 64x64, model input 32x32" in out and "load average" in out


def test_the_inference_benchmark_refuses_frames_it_would_upsample(bench: Path) -> None:
    from experiments.benchmarks.inference import main as benchmark

    with pytest.raises(SystemExit, match="frames of 64x64, smaller than --size 224"):
        benchmark(["--root", str(bench), "--videos", "1", "--size", "224"])


def test_loader_benchmark_runs_in_tiny_mode(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PyAV, the decoding datamodule and the frame store (built ahead by the command, and on
    first use) each print a rate and its ratio to PyAV; the build time and the load apart."""
    from experiments.benchmarks.loader import main as benchmark

    assert benchmark(["--tiny", "--root", str(bench)]) == 0
    out = capsys.readouterr().out
    rates = dict(
        re.findall(r"^  (.+?): +([\d.]+) clips/s(?: \([\d.]+x PyAV\))?$", out, re.MULTILINE)
    )
    assert sorted(rates) == [
        "datamodule, 0 workers, decoding",
        "frame store built ahead, 0 workers, 1st pass",
        "frame store built on first use, 0 workers, 1st pass",
        "straightforward PyAV, 1 process",
    ]
    assert all(float(rate) > 0 for rate in rates.values())
    assert len(re.findall(r"clips/s \([\d.]+x PyAV\)$", out, re.MULTILINE)) == 3
    assert re.search(r"crossdistill frame-store build, 6 videos x \(RGB, flow\): [\d.]+ s", out)
    assert len(re.findall(r"^load average \(1, 5, 15 min\) at the \w+: [\d. ]+", out, re.M)) == 2


def test_segment_detector_benchmark_runs_in_tiny_mode(capsys: pytest.CaptureFixture[str]) -> None:
    """Both hot spots timed against their alternative, with equal outputs."""
    from experiments.benchmarks.segment_detector import main as benchmark

    assert benchmark(["--tiny"]) == 0
    out = capsys.readouterr().out
    gap = re.search(r"gathered windows [\d.]+ ms \([\d.]+x\), largest difference ([\d.e+-]+)", out)
    assert gap is not None and float(gap.group(1)) < 1e-4, out
    assert "same segments kept: True" in out and "load average" in out


@pytest.mark.slow
def test_threads_benchmark_runs_in_tiny_mode(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One thread and two (spinning and sleeping) each train in their own process."""
    from experiments.benchmarks.threads import main as benchmark

    root = copy_benchmark(bench, tmp_path / "bench")
    assert benchmark(["--tiny", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("dense RGB student"))
    rates = re.findall(r"(\d) thread\(s\) (ACTIVE|PASSIVE) ([\d.]+) steps/s", line)
    assert [(t, p) for t, p, _ in rates] == [("1", "PASSIVE"), ("2", "ACTIVE"), ("2", "PASSIVE")]
    assert all(float(rate) > 0 for _, _, rate in rates) and "load average" in out
