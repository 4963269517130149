"""Optical flow for a folder of videos (`crossdistill flow`): worker processes, resume, progress.

Each video `<videos>/<id>.<ext>` is decoded frame by frame (PyAV), its flow computed from each
frame to the next (`datamodules.optical_flow`) and written as it goes, in one of two formats:

- `video`: `<out>/<id>.mp4`, the project's quantised flow video (one flow frame per video frame,
  the last repeating the one before), read by `FlowSource(path="<out>/{video_id}.mp4")`;
- `jpeg`: `<out>/<id>/flow_x_00001.jpg`, `flow_y_00001.jpg`, ... (one pair per pair of frames,
  numbered from 1: TSN's, I3D's and denseflow's layout), read by
  `FlowSource(path="<out>/{video_id}", fps=...)`.

An output is written under `<out>/.partial/` and renamed into place when complete, so an
interrupted run never leaves a file that looks finished. A rerun skips the videos whose output
is complete (its frame count matches the video's and its last frame decodes) and redoes the
rest. Inputs are only ever read. `<out>/flow.json` records the method, format, bound and each
video's frame rate and frame count.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from datamodules.optical_flow import (
    FlowEstimator,
    FlowMethod,
    RaftModel,
    flow_estimator,
    quantize_flow,
)
from datamodules.sources.decoders import FrameFolder, FrameFolderReader, PyAVReader
from datamodules.sources.integrity import commit, write_json_atomic
from datamodules.video_io import VideoWriter

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
JPEG_FRAMES = FrameFolder(("flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg"), first=1)
"""The names `--format jpeg` writes (FlowSource's default `frames`)."""
PARTIAL = ".partial"
MANIFEST = "flow.json"

FlowFormat = Literal["video", "jpeg"]


class FlowExtractionError(RuntimeError):
    """The flow of some videos could not be computed; the message names each and the fix."""


@dataclass(frozen=True)
class FlowSettings:
    """How flow is computed and stored (see `crossdistill flow --help`)."""

    method: FlowMethod = "dis"
    format: FlowFormat = "video"
    bound: float = 20.0
    size: int | None = None
    weights: Path | None = None
    raft_model: RaftModel = "large"
    device: str = "cpu"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.bound <= 0 or (self.size is not None and self.size < 8):
            raise ValueError(f"need bound > 0 and size >= 8, got {self.bound}, {self.size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg quality is 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class VideoResult:
    video_id: str
    frames: int
    fps: float
    seconds: float
    skipped: bool = False


def list_videos(folder: Path) -> list[Path]:
    """The video files of a folder (not its subfolders), sorted; their stems are the video ids."""
    if not folder.is_dir():
        raise FlowExtractionError(f"{folder}: no such folder of videos")
    videos = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not videos:
        raise FlowExtractionError(
            f"{folder}: no videos ({', '.join(VIDEO_SUFFIXES)}). Fix: point --videos at the "
            "folder that holds them"
        )
    stems: dict[str, Path] = {}
    for video in videos:
        if video.stem in stems:
            raise FlowExtractionError(
                f"{stems[video.stem]} and {video} have the same video id {video.stem!r}, and "
                "would write the same flow. Fix: keep one of them in the folder"
            )
        stems[video.stem] = video
    return videos


def output_path(out: Path, video_id: str, format: FlowFormat) -> Path:
    return out / (f"{video_id}.mp4" if format == "video" else video_id)


def is_complete(output: Path, format: FlowFormat, frame_count: int) -> bool:
    """Whether `output` holds the whole flow of a video of `frame_count` frames."""
    try:
        if format == "video":
            reader = PyAVReader(output)
            expected = frame_count
        else:
            reader = FrameFolderReader(output, JPEG_FRAMES)
            expected = frame_count - 1
            if any(len(JPEG_FRAMES.numbers(output, t)) != expected for t in JPEG_FRAMES.templates):
                return False
        if reader.frame_count != expected:
            return False
        reader.frames(np.array([expected - 1]))
    except Exception:
        return False
    return True


def _frames(reader: PyAVReader, size: int | None) -> Iterator[np.ndarray]:
    """Every frame of the video in order, its short side resized to `size` when given."""
    for rgb in reader.stream():
        if size is not None:
            height, width = rgb.shape[:2]
            scale = size / min(height, width)
            shape = (max(1, round(width * scale)), max(1, round(height * scale)))
            if shape != (width, height):
                interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                rgb = cv2.resize(rgb, shape, interpolation=interpolation)
        yield rgb


def extract_video(video: Path, out: Path, settings: FlowSettings) -> VideoResult:
    """The flow of one video, written atomically; skipped when its output is complete."""
    start = time.perf_counter()
    try:
        reader = PyAVReader(video)
    except Exception as err:
        raise FlowExtractionError(f"{video}: cannot be read as a video ({err})") from err
    fps, video_id = reader.fps, video.stem
    if reader.frame_count < 2:
        raise FlowExtractionError(f"{video}: has {reader.frame_count} frame(s); flow needs 2")
    output = output_path(out, video_id, settings.format)
    if is_complete(output, settings.format, reader.frame_count):
        return VideoResult(video_id, reader.frame_count, fps, 0.0, skipped=True)
    pending = out / PARTIAL / output.name
    _remove(pending)
    pending.parent.mkdir(parents=True, exist_ok=True)
    try:
        frames = _write(reader, pending, settings)
    except Exception as err:
        _remove(pending)
        raise FlowExtractionError(f"{video}: {type(err).__name__}: {err}") from err
    if frames < 2:
        _remove(pending)
        raise FlowExtractionError(f"{video}: {frames} frame(s) could be decoded; flow needs 2")
    if output.exists():  # incomplete: replaced by the complete one
        _remove_incomplete(output)
    if settings.format == "video":
        commit(pending, output)
    else:
        os.replace(pending, output)
    return VideoResult(video_id, frames, fps, time.perf_counter() - start)


_ESTIMATORS: dict[FlowSettings, FlowEstimator] = {}
"""The estimator of each process, made once (RAFT loads its weights once per process)."""


def estimator_for(settings: FlowSettings) -> FlowEstimator:
    if settings not in _ESTIMATORS:
        _ESTIMATORS[settings] = flow_estimator(
            settings.method, settings.weights, settings.raft_model, settings.device
        )
    return _ESTIMATORS[settings]


def _write(reader: PyAVReader, pending: Path, settings: FlowSettings) -> int:
    """Compute and write the flow; returns the number of video frames decoded."""
    estimator = estimator_for(settings)
    decoded = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal decoded
        for frame in _frames(reader, settings.size):
            decoded += 1
            yield frame

    if settings.format == "video":
        with VideoWriter(pending, reader.fps, lossless_rgb=True) as writer:
            last = None
            for flow in estimator.pairs(counted()):
                last = quantize_flow(flow, settings.bound)
                writer.write(last)
            if last is not None:
                writer.write(last)  # the last frame repeats the flow of the one before
        return decoded
    pending.mkdir()
    quality = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    for index, flow in enumerate(estimator.pairs(counted())):
        planes = quantize_flow(flow, settings.bound)
        for plane, name in zip(
            (planes[..., 0], planes[..., 1]), JPEG_FRAMES.names(index), strict=True
        ):
            if not cv2.imwrite(str(pending / name), plane, quality):
                raise OSError(f"could not write {pending / name}")
    return decoded


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_incomplete(output: Path) -> None:
    """Delete an incomplete output before its complete one takes its place; a folder holding
    anything but flow JPEGs is left alone (an error), since this command did not write it."""
    if output.is_dir():
        patterns = [JPEG_FRAMES.numbers(output, t) for t in JPEG_FRAMES.templates]
        if sum(len(p) for p in patterns) != sum(1 for _ in output.iterdir()):
            raise FlowExtractionError(
                f"{output}: holds files other than flow JPEGs, and its flow is incomplete. Fix: "
                "move the other files away, or choose another --out"
            )
    _remove(output)


def extract_folder(
    videos: Path,
    out: Path,
    settings: FlowSettings,
    workers: int = 1,
    report: Callable[[VideoResult | str, int, int], None] | None = None,
) -> list[VideoResult]:
    """The flow of every video of `videos` into `out`; `report(result or error, done, total)`
    after each. Raises `FlowExtractionError` naming every video that failed, after the others
    are done."""
    inputs = list_videos(videos)
    for video in inputs:
        output = output_path(out, video.stem, settings.format)
        if output.resolve() == video.resolve():
            raise FlowExtractionError(
                f"{video}: its flow would overwrite it. Fix: choose an --out other than --videos"
            )
    try:  # a missing TV-L1 or RAFT weights file is one error, before any video
        estimator_for(settings)
    except (OSError, RuntimeError, ValueError) as err:
        raise FlowExtractionError(str(err)) from err
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(out)
    if previous and previous.get("settings") != _recorded(settings):
        raise FlowExtractionError(
            f"{out} holds flow computed with other settings ({previous.get('settings')}; now "
            f"{_recorded(settings)}), which a resume would mix. Fix: choose another --out, or "
            "the settings of flow.json"
        )
    _write_manifest(out, settings, [])  # first, so that an interrupted run is known too
    results: list[VideoResult] = []
    failures: list[str] = []

    def finished(outcome: VideoResult | str) -> None:
        (results if isinstance(outcome, VideoResult) else failures).append(outcome)
        if report is not None:
            report(outcome, len(results) + len(failures), len(inputs))

    if workers <= 1:
        for video in inputs:
            finished(_attempt(video, out, settings))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_attempt, video, out, settings) for video in inputs]
            for future in as_completed(futures):
                finished(future.result())
    partial = out / PARTIAL
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    _write_manifest(out, settings, results)
    if failures:
        raise FlowExtractionError(
            f"{len(failures)} of {len(inputs)} videos failed (the others are done; a rerun "
            "skips them):\n  " + "\n  ".join(failures)
        )
    return sorted(results, key=lambda r: r.video_id)


def _attempt(video: Path, out: Path, settings: FlowSettings) -> VideoResult | str:
    try:
        return extract_video(video, out, settings)
    except FlowExtractionError as err:
        return str(err)
    except Exception as err:  # a setup error (RAFT weights, TV-L1 missing) names its fix
        return f"{video}: {err}"


def _recorded(settings: FlowSettings) -> dict:
    """The settings that make the flow what it is, as flow.json records them (not the device)."""
    recorded = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    recorded.pop("device")
    return recorded


def _read_manifest(out: Path) -> dict:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _write_manifest(out: Path, settings: FlowSettings, results: list[VideoResult]) -> None:
    videos = _read_manifest(out).get("videos", {})
    for result in results:
        videos[result.video_id] = {"fps": result.fps, "frames": result.frames}
    layout = (
        "{video_id}.mp4"
        if settings.format == "video"
        else "{video_id}/" + ", ".join(JPEG_FRAMES.templates)
    )
    write_json_atomic(
        out / MANIFEST,
        {
            "settings": _recorded(settings),
            "layout": layout,
            "encoding": "value = clip(round(128 + flow_px * 127 / bound), 1, 255)",
            "flow": "frame t -> t+1"
            + ("; the last frame repeats" if settings.format == "video" else ", numbered from 1"),
            "videos": dict(sorted(videos.items())),
        },
    )


def progress_printer(stream=None) -> Callable[[VideoResult | str, int, int], None]:
    """A `report` for `extract_folder`: a tqdm bar on a terminal when tqdm is installed, else
    one line per finished video."""
    stream = stream or sys.stdout
    bar = None
    if stream.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            bar = tqdm(unit="video", file=stream)

    def report(outcome: VideoResult | str, done: int, total: int) -> None:
        if isinstance(outcome, str):
            line = f"FAILED {outcome}"
        elif outcome.skipped:
            line = f"{outcome.video_id}: complete, skipped"
        else:
            line = f"{outcome.video_id}: {outcome.frames} frames in {outcome.seconds:.1f} s"
        if bar is not None:
            bar.total = total
            bar.update(1)
            if isinstance(outcome, str):
                bar.write(line, file=stream)
            if done == total:
                bar.close()
        else:
            print(f"[{done}/{total}] {line}", file=stream, flush=True)

    return report
