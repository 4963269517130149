"""Inference cost of the RGB student against the two-stream model with its optical flow (DIS and
TV-L1), in one run, on frames decoded at the model's input size (224x224 by default).

The point of distilling flow into an RGB student is that inference skips the flow. Every path
starts from the same mp4 of a synthetic benchmark rendered at `--size` (nothing is upsampled),
decoded with decord as the datamodule does:

- RGB student: decode -> RGB tensor -> student. The student is a student export
  (`*.student.pt`) loaded with `load_student`: by default the frame-level RGB model of
  `configs/teacher/dense_rgb.yaml` (a VideoCNN + PDAN, the student of dense_dai21.yaml),
  written as an export here, or a trained run's export with `--student`.
- two-stream + DIS, two-stream + TV-L1: decode -> RGB tensor, and optical flow computed from
  the decoded frames with the estimator `crossdistill flow --method dis|tvl1` uses
  (`datamodules.optical_flow.flow_estimator`: OpenCV's DIS, medium preset; OpenCV contrib's dual
  TV-L1, default parameters, the flow two-stream I3D pipelines use) -> flow tensor -> the RGB
  and flow encoders of `configs/teacher/dense_{rgb,flow}.yaml` side by side (`EarlyFusion`)
  into one PDAN, the frame-level twin of `configs/teacher/dense_features_rgb_flow.yaml`; or a
  trained export with `--two-stream`.

TV-L1 costs about two orders of magnitude more than DIS per frame, so by default it runs on the
first `--tvl1-frames` frame pairs of each video only: its time is that measured time scaled to
all the video's pairs (the per-pair cost is printed), and the model still runs on the whole
video (the remaining flow frames repeat the last computed one). `--tvl1-frames 0` computes it on
every pair. DIS always runs on every pair.

Tensors are made as `VideoSource` and `FlowSource` make them (centred square, `--size`, flow in
output pixels / bound), each video is cut into windows of `--window` steps (one frame per step,
as the synthetic configs do) and run as one batch, like `crossdistill test`. Every stage is
timed per video, the three paths interleaved (taking turns going first) in every repeat; the
median over repeats is reported, with the load average at the start and at the end. Models run
on CPU, and on CUDA too when it is available (flow stays on the CPU).

    .venv/bin/python experiments/benchmarks/inference.py [--videos 8] [--repeats 3]
        [--tvl1-frames 16] [--size 224] [--root DIR] [--student RUN/checkpoints/best.student.pt]

Without `--root`, a synthetic benchmark rendered at `--size` is generated once under
`outputs/data/synthetic-<size>/` (kept for the next run); a `--root` whose frames are smaller
than `--size` on their short side is refused. `--frames N` keeps the first N frames of each
video (0: all).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch import nn

from datamodules.optical_flow import FLOW_BOUND_PX, FlowEstimator, compute_flow, flow_estimator
from datamodules.sources.base import square_resize
from datamodules.sources.decoders import DecordReader
from datamodules.synthetic.generator import SyntheticConfig, generate_benchmark, is_complete
from lightning_modules.export import build_model, export_payload, load_student, save_export

REPO = Path(__file__).resolve().parents[2]
TEACHERS = REPO / "configs" / "teacher"
DENSE_TASK = {"class_path": "lightning_modules.tasks.DenseTask"}


def teacher_model_config(name: str) -> dict[str, Any]:
    """The `model` of a TeacherModule config file (class_path/init_args)."""
    config = yaml.safe_load((TEACHERS / f"{name}.yaml").read_text())
    return config["model"]["init_args"]["model"]


def student_config() -> dict[str, Any]:
    return teacher_model_config("dense_rgb")


def two_stream_config() -> dict[str, Any]:
    """RGB and flow encoders of the dense teachers, concatenated into one PDAN."""
    rgb, flow = teacher_model_config("dense_rgb"), teacher_model_config("dense_flow")
    fusion = {
        "class_path": "lightning_modules.models.EarlyFusion",
        "init_args": {"encoders": [rgb["init_args"]["encoder"], flow["init_args"]["encoder"]]},
    }
    width = build_model({"model": fusion}).out_channels
    head = rgb["init_args"]["head"]
    return {
        "class_path": "lightning_modules.models.ActionModel",
        "init_args": {
            "encoder": fusion,
            "head": {**head, "init_args": {**head["init_args"], "in_channels": width}},
        },
    }


def write_untrained_export(config: dict[str, Any], path: Path, classes: list[str]) -> Path:
    """An export of a freshly initialised model (latency does not depend on the weights)."""
    model = build_model({"model": config})
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"model": config, "task": DENSE_TASK},
    }
    return save_export(export_payload(checkpoint, model, classes, "untrained"), path)


def benchmark_videos(
    root: Path | None, count: int, size: int
) -> tuple[list[Path], list[str], list[str]]:
    """The first `count` videos of `root` (default: a benchmark rendered at `size`, generated
    when missing), its classes and their frame sizes; refused when their frames are smaller
    than `size` on the short side."""
    if root is None:
        root = REPO / "outputs" / "data" / f"synthetic-{size}"
        config = SyntheticConfig(videos=max(count, 8), size=size)
        if not is_complete(root, config):
            print(f"generating {config.videos} synthetic videos at {size}x{size} under {root} ...")
            generate_benchmark(root, config)
    manifest = yaml.safe_load((root / "benchmark.json").read_text())
    videos = sorted((root / "videos").glob("*.mp4"))[:count]
    if not videos:
        raise SystemExit(f"no videos/*.mp4 under {root}")
    shapes = set()
    for video in videos:
        height, width = DecordReader(video).frames(np.array([0])).shape[1:3]
        if min(height, width) < size:
            raise SystemExit(
                f"{video}: frames of {width}x{height}, smaller than --size {size} on the short "
                "side: they would be upsampled, which understates the cost of flow. Fix: leave "
                "out --root (a benchmark is rendered at --size), or a smaller --size"
            )
        shapes.add(f"{width}x{height}")
    return videos, list(manifest["classes"]), sorted(shapes)


def to_windows(frames: np.ndarray, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(C, T, S, S)` float -> `(n, C, window, S, S)` and the mask `(n, window)`."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    channels, steps = tensor.shape[:2]
    count = -(-steps // window)
    padded = torch.zeros(channels, count * window, *tensor.shape[2:], dtype=tensor.dtype)
    padded[:, :steps] = tensor
    mask = torch.zeros(count * window, dtype=torch.bool)
    mask[:steps] = True
    batch = padded.unflatten(1, (count, window)).transpose(0, 1).contiguous()
    return batch, mask.view(count, window)


def rgb_tensor(decoded: np.ndarray, size: int) -> np.ndarray:
    """As `VideoSource.load`: `(3, T, S, S)` in [0, 1]."""
    frames = square_resize(decoded, size)
    return np.multiply(frames.transpose(3, 0, 1, 2), np.float32(1 / 255), dtype=np.float32)


def flow_tensor(flow: np.ndarray, size: int) -> np.ndarray:
    """As `FlowSource.load`: `(2, T, S, S)` in output pixels / bound."""
    side = min(flow.shape[1:3])
    resized = square_resize(flow, size)
    resized *= size / side / FLOW_BOUND_PX
    return resized.transpose(3, 0, 1, 2)


class Timer:
    """Seconds per named stage, summed over the videos of one repeat (CUDA synchronised).

    A stage run on part of the work is timed with `scale` (whole / part): `seconds` holds the
    extrapolated time, `measured` the time it really took, `pairs` the flow pairs computed."""

    def __init__(self, device: torch.device) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.measured: dict[str, float] = defaultdict(float)
        self.pairs = 0
        self.device = device

    def __call__(self, name: str, work: Callable[[], Any], scale: float = 1.0) -> Any:
        start = time.perf_counter()
        result = work()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.seconds[name] += elapsed * scale
        self.measured[name] += elapsed
        return result


DECODE, RGB, FLOW, FLOW_TENSOR, MODEL = (
    "decode (decord)",
    "RGB to tensor",
    "optical flow",
    "flow to tensor",
    "model forward",
)
STAGES = (DECODE, RGB, FLOW, FLOW_TENSOR, MODEL)
STUDENT, DIS, TVL1 = "RGB student", "two-stream + DIS", "two-stream + TV-L1"
PATHS = (STUDENT, DIS, TVL1)


def forward(
    model: nn.Module, inputs: dict[str, torch.Tensor], mask: torch.Tensor, device: torch.device
) -> torch.Tensor:
    with torch.inference_mode():
        on_device = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        return model(on_device, mask.to(device)).logits


def student_path(video: Path, args: argparse.Namespace, model: nn.Module, timer: Timer) -> int:
    """decode -> RGB -> student; returns the number of frames."""
    decoded = timer(DECODE, lambda: decode(video, args.frames))
    rgb, mask = timer(RGB, lambda: to_windows(rgb_tensor(decoded, args.size), args.window))
    timer(MODEL, lambda: forward(model, {"rgb": rgb}, mask, timer.device))
    return len(decoded)


def two_stream_path(
    estimator: FlowEstimator, limit: int,
    video: Path, args: argparse.Namespace, model: nn.Module, timer: Timer,
) -> int:  # fmt: skip
    """decode -> RGB, and flow of the decoded frames -> flow -> two-stream model. The flow of
    the first `limit` frame pairs only (0: all) is computed, its time scaled to all pairs; the
    other flow frames repeat the last computed one."""
    decoded = timer(DECODE, lambda: decode(video, args.frames))
    rgb, mask = timer(RGB, lambda: to_windows(rgb_tensor(decoded, args.size), args.window))
    pairs = len(decoded) - 1
    computed = pairs if limit <= 0 else min(limit, pairs)
    flow = timer(FLOW, lambda: compute_flow(decoded[: computed + 1], estimator), pairs / computed)
    timer.pairs += computed
    if computed < pairs:
        flow = np.concatenate([flow, np.repeat(flow[-1:], pairs - computed, axis=0)])
    flow, _ = timer(FLOW_TENSOR, lambda: to_windows(flow_tensor(flow, args.size), args.window))
    timer(MODEL, lambda: forward(model, {"rgb": rgb, "flow": flow}, mask, timer.device))
    return len(decoded)


def path_functions(args: argparse.Namespace) -> dict[str, Callable[..., int]]:
    """Each path's function of (video, args, model, timer); flow as `crossdistill flow` makes it."""
    return {
        STUDENT: student_path,
        DIS: partial(two_stream_path, flow_estimator("dis"), 0),
        TVL1: partial(two_stream_path, flow_estimator("tvl1"), args.tvl1_frames),
    }


def one_pass(
    videos: list[Path], args: argparse.Namespace, models: dict[str, nn.Module],
    device: torch.device, repeat: int,
) -> tuple[dict[str, Timer], int]:  # fmt: skip
    """Each path's timer over all videos, and the number of frames. The paths take turns going
    first, so that none always runs after another's OpenCV or torch work."""
    functions = path_functions(args)
    timers = {name: Timer(device) for name in PATHS}
    frames = 0
    for index, video in enumerate(videos):
        turn = (index + repeat) % len(PATHS)
        for name in PATHS[turn:] + PATHS[:turn]:
            frames = frames + functions[name](video, args, models[name], timers[name])
    return timers, frames // len(PATHS)


def decode(path: Path, frames: int) -> np.ndarray:
    reader = DecordReader(path)
    count = reader.frame_count if frames <= 0 else min(frames, reader.frame_count)
    return reader.frames(np.arange(count))


def megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.2f} MiB"


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def report(device: str, passes: list[dict[str, Timer]], videos: int, frames: int) -> None:
    """The medians of one device's repeats: stages per video, one line per path, the ratios."""
    ms = {
        path: {
            stage: 1000 * statistics.median(p[path].seconds[stage] for p in passes) / videos
            for stage in passes[0][path].seconds
        }
        for path in PATHS
    }
    print(f"\n{'ms per video (' + device + ')':<30}" + "".join(f"{p:>20}" for p in PATHS))
    for stage in STAGES:
        row = [f"{ms[p][stage]:>20.2f}" if stage in ms[p] else f"{'-':>20}" for p in PATHS]
        print(f"{stage:<30}" + "".join(row))
    totals = {path: sum(stages.values()) for path, stages in ms.items()}
    print(f"{'total':<30}" + "".join(f"{totals[p]:>20.2f}" for p in PATHS))
    per_frame = videos / frames
    for path in PATHS:
        stage = {name: ms[path].get(name, 0.0) * per_frame for name in STAGES}
        print(
            f"{device} {path}: {totals[path]:.2f} ms per video, "
            f"{totals[path] * per_frame:.3f} ms per frame ({1000 / (totals[path] * per_frame):.1f}"
            f" frames/s); per frame: decode + RGB tensor {stage[DECODE] + stage[RGB]:.3f} ms, "
            f"flow + flow tensor {stage[FLOW] + stage[FLOW_TENSOR]:.3f} ms, model "
            f"{stage[MODEL]:.3f} ms"
        )
    student = totals[STUDENT]
    for path in (DIS, TVL1):
        flow = ms[path][FLOW] + ms[path][FLOW_TENSOR]
        print(
            f"ratio ({device}): {path} / {STUDENT} = {totals[path] / student:.2f}x end to end "
            f"({ms[path][MODEL] / ms[STUDENT][MODEL]:.2f}x the models alone); optical flow is "
            f"{100 * flow / totals[path]:.0f}% of the {path} time"
        )


def flow_costs(passes: list[dict[str, Timer]], args: argparse.Namespace, frames: int) -> None:
    """The measured cost of a frame pair of each flow method, and how TV-L1 was extrapolated."""
    cost = {
        path: statistics.median(1000 * p[path].measured[FLOW] / p[path].pairs for p in passes)
        for path in (DIS, TVL1)
    }
    computed, pairs = passes[0][TVL1].pairs, passes[0][DIS].pairs
    how = (
        f"on all {pairs} frame pairs"
        if computed == pairs
        else f"on the first {args.tvl1_frames} frame pairs of each video ({computed} of {pairs} "
        "pairs), its time extrapolated to every pair at that cost; the model still runs on "
        "every frame"
    )
    print(
        f"flow per frame pair (measured, median of repeats): DIS {cost[DIS]:.2f} ms (on all "
        f"{pairs} pairs), TV-L1 {cost[TVL1]:.2f} ms = {cost[TVL1] / cost[DIS]:.0f}x DIS; TV-L1 "
        f"computed {how}; {frames} frames"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="a synthetic benchmark (default: generated)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=0, help="first N frames per video (0: all)")
    parser.add_argument("--size", type=int, default=224, help="side of the frames (pixels)")
    parser.add_argument("--window", type=int, default=64, help="steps per window (batch rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tvl1-frames", type=int, default=16, help="TV-L1 on the first N pairs per video (0: all)"
    )
    parser.add_argument("--student", type=Path, help="a student export (default: untrained)")
    parser.add_argument("--two-stream", type=Path, help="a two-stream export (default: untrained)")
    args = parser.parse_args(argv)
    if args.frames == 1 or args.frames < 0 or args.tvl1_frames < 0 or args.repeats < 1:
        parser.error("need --frames 0 or >= 2, --tvl1-frames >= 0 and --repeats >= 1")
    start_load = load_average()

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        videos, classes, shapes = benchmark_videos(args.root, args.videos, args.size)
        student_file = args.student or write_untrained_export(
            student_config(), scratch / "student.student.pt", classes
        )
        two_stream_file = args.two_stream or write_untrained_export(
            two_stream_config(), scratch / "two_stream.student.pt", classes
        )
        devices = [torch.device("cpu")]
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        results = {}
        for device in devices:
            two_stream = load_student(two_stream_file).to(device)  # both flow paths' model
            models = {STUDENT: load_student(student_file).to(device)}
            models |= {DIS: two_stream, TVL1: two_stream}
            one_pass(videos[:1], args, models, device, 0)  # warm-up
            passes = [one_pass(videos, args, models, device, r) for r in range(args.repeats)]
            results[device.type] = passes
        sizes = (megabytes(student_file), megabytes(two_stream_file))
        counts = [parameters(models[STUDENT]), parameters(two_stream)]

    frames = passes[0][1]
    print(
        f"{len(videos)} videos, {frames} frames ({frames / len(videos):.0f} per video), decoded "
        f"at {', '.join(shapes)}, model input {args.size}x{args.size}, windows of {args.window} "
        f"steps; torch {torch.__version__}, {torch.get_num_threads()} threads; OpenCV "
        f"{cv2.__version__}, {cv2.getNumThreads()} threads; median of {args.repeats} repeats"
    )
    for device, passes in results.items():
        report(device, [timers for timers, _ in passes], len(videos), frames)
    flow_costs([timers for timers, _ in results["cpu"]], args, frames)
    print(
        f"files: student export {sizes[0]} ({counts[0]:,} parameters); two-stream export "
        f"{sizes[1]} ({counts[1]:,} parameters)"
    )
    print(
        f"load average (1, 5, 15 min) at start {start_load}; at end {load_average()}; "
        f"{os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
