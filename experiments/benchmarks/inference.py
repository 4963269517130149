"""Inference cost of the RGB student against the two-stream model with its optical flow, in one run.

The point of distilling flow into an RGB student is that inference skips the flow. Both paths
start from the same mp4 of the synthetic benchmark, decoded with decord as the datamodule does:

- RGB student: decode -> RGB tensor -> student. The student is a student export
  (`*.student.pt`) loaded with `load_student`: by default the frame-level RGB model of
  `configs/teacher/dense_rgb.yaml` (a VideoCNN + PDAN, the student of dense_dai21.yaml),
  written as an export here, or a trained run's export with `--student`.
- two-stream: decode -> RGB tensor, and optical flow computed from the decoded frames with our
  OpenCV DIS (`datamodules.optical_flow.compute_flow`, as the benchmark's flow files were made) ->
  flow tensor -> the RGB and flow encoders of `configs/teacher/dense_{rgb,flow}.yaml` side by
  side (`EarlyFusion`) into one PDAN, the frame-level twin of
  `configs/teacher/dense_features_rgb_flow.yaml`; or a trained export with `--two-stream`.

Tensors are made as `VideoSource` and `FlowSource` make them (centred square, `--size`, flow in
output pixels / bound), each video is cut into windows of `--window` steps (one frame per step,
as the synthetic configs do) and run as one batch, like `crossdistill test`. Every stage is
timed per video, both paths interleaved in every repeat; the median over repeats is reported.
Models run on CPU, and on CUDA too when it is available (flow stays on the CPU: OpenCV's DIS).

    .venv/bin/python experiments/benchmarks/inference.py [--root data/synthetic] [--videos 8]
        [--frames 0] [--repeats 3] [--student RUN/checkpoints/best.student.pt]

Without `--root` (and without `data/synthetic/`), a benchmark of `--videos` videos is generated
into a temporary folder. `--frames N` keeps the first N frames of each video (0: all).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch import nn

from datamodules.optical_flow import FLOW_BOUND_PX, compute_flow
from datamodules.sources.base import square_resize
from datamodules.sources.decoders import DecordReader
from datamodules.synthetic import SyntheticConfig, generate_benchmark
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


def benchmark_videos(root: Path | None, count: int, scratch: Path) -> tuple[list[Path], list[str]]:
    if root is None:
        default = REPO / "data" / "synthetic"
        if (default / "benchmark.json").is_file():
            root = default
        else:
            root = scratch / "synthetic"
            generate_benchmark(root, SyntheticConfig(videos=max(count, 3)), workers=1)
    manifest = yaml.safe_load((root / "benchmark.json").read_text())
    videos = sorted((root / "videos").glob("*.mp4"))[:count]
    if not videos:
        raise SystemExit(f"no videos/*.mp4 under {root}")
    return videos, list(manifest["classes"])


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
    """Seconds per named stage, summed over the videos of one repeat (CUDA synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.device = device

    def __call__(self, name: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = work()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] += time.perf_counter() - start
        return result


DECODE, RGB, FLOW, FLOW_TENSOR, MODEL = (
    "decode (decord)",
    "RGB to tensor",
    "optical flow (OpenCV DIS)",
    "flow to tensor",
    "model forward",
)


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


def two_stream_path(video: Path, args: argparse.Namespace, model: nn.Module, timer: Timer) -> int:
    """decode -> RGB, and DIS flow of the decoded frames -> flow -> two-stream model."""
    decoded = timer(DECODE, lambda: decode(video, args.frames))
    rgb, mask = timer(RGB, lambda: to_windows(rgb_tensor(decoded, args.size), args.window))
    flow = timer(FLOW, lambda: compute_flow(decoded))
    flow, _ = timer(FLOW_TENSOR, lambda: to_windows(flow_tensor(flow, args.size), args.window))
    timer(MODEL, lambda: forward(model, {"rgb": rgb, "flow": flow}, mask, timer.device))
    return len(decoded)


PATHS = {"RGB student": student_path, "two-stream + flow": two_stream_path}


def one_pass(
    videos: list[Path], args: argparse.Namespace, models: dict[str, nn.Module],
    device: torch.device, repeat: int,
) -> tuple[dict[str, dict[str, float]], int]:  # fmt: skip
    """Each path's seconds per stage over all videos, and the number of frames. The paths take
    turns going first, so that neither always runs after the other's OpenCV or torch work."""
    timers = {name: Timer(device) for name in PATHS}
    frames = 0
    for index, video in enumerate(videos):
        order = list(PATHS) if (index + repeat) % 2 == 0 else list(PATHS)[::-1]
        for name in order:
            frames = frames + PATHS[name](video, args, models[name], timers[name])
    return {name: dict(timer.seconds) for name, timer in timers.items()}, frames // len(PATHS)


def decode(path: Path, frames: int) -> np.ndarray:
    reader = DecordReader(path)
    count = reader.frame_count if frames <= 0 else min(frames, reader.frame_count)
    return reader.frames(np.arange(count))


def megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.2f} MiB"


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="a synthetic benchmark (default: generate one)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=0, help="first N frames per video (0: all)")
    parser.add_argument("--size", type=int, default=64, help="side of the model input (pixels)")
    parser.add_argument("--window", type=int, default=64, help="steps per window (batch rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--student", type=Path, help="a student export (default: untrained)")
    parser.add_argument("--two-stream", type=Path, help="a two-stream export (default: untrained)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        videos, classes = benchmark_videos(args.root, args.videos, scratch)
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
            models = {
                "RGB student": load_student(student_file).to(device),
                "two-stream + flow": load_student(two_stream_file).to(device),
            }
            one_pass(videos[:1], args, models, device, 0)  # warm-up
            passes = [one_pass(videos, args, models, device, r) for r in range(args.repeats)]
            results[device.type] = passes
        sizes = (megabytes(student_file), megabytes(two_stream_file))
        counts = [parameters(model) for model in models.values()]

    frames = passes[0][1]
    print(
        f"{len(videos)} videos, {frames} frames ({frames / len(videos):.0f} per video), "
        f"{args.size}x{args.size}, windows of {args.window} steps; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; OpenCV {cv2.__version__}, {cv2.getNumThreads()} "
        f"threads; median of {args.repeats} repeats"
    )
    for device, passes in results.items():
        ms = {
            path: {
                stage: 1000 * statistics.median(p[0][path][stage] for p in passes) / len(videos)
                for stage in passes[0][0][path]
            }
            for path in PATHS
        }
        print(f"\n{'ms per video (' + device + ')':<30}" + "".join(f"{p:>20}" for p in PATHS))
        for stage in (DECODE, RGB, FLOW, FLOW_TENSOR, MODEL):
            row = [f"{ms[p][stage]:>20.2f}" if stage in ms[p] else f"{'-':>20}" for p in PATHS]
            print(f"{stage:<30}" + "".join(row))
        totals = {path: sum(stages.values()) for path, stages in ms.items()}
        print(f"{'total':<30}" + "".join(f"{totals[p]:>20.2f}" for p in PATHS))
        per_frame = [f"{totals[p] * len(videos) / frames:>20.3f}" for p in PATHS]
        print(f"{'ms per frame':<30}" + "".join(per_frame))
        rates = [f"{1000 * frames / len(videos) / totals[p]:>20.0f}" for p in PATHS]
        print(f"{'frames per second':<30}" + "".join(rates))
        student, two_stream = ms["RGB student"], ms["two-stream + flow"]
        flow = two_stream[FLOW] + two_stream[FLOW_TENSOR]
        print(
            f"ratio ({device}): two-stream with flow / RGB student = "
            f"{totals['two-stream + flow'] / totals['RGB student']:.2f}x end to end "
            f"({two_stream[MODEL] / student[MODEL]:.2f}x the models alone); optical flow is "
            f"{100 * flow / totals['two-stream + flow']:.0f}% of the two-stream time"
        )
    print(
        f"files: student export {sizes[0]} ({counts[0]:,} parameters); two-stream export "
        f"{sizes[1]} ({counts[1]:,} parameters)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
