"""Generate the synthetic multimodal benchmark on disk, in the formats of real benchmarks.

Layout under the output folder (every path is also listed in `benchmark.json`):

    benchmark.json                      manifest: config, classes, joints, formats, subsets
    annotations/activitynet.json        ActivityNet v1.3 layout (+ "classes", per-video "fps")
    annotations/charades_<subset>.csv   Charades layout, same segments as the JSON
    annotations/charades_classes.txt    "c000 walk_left" lines
    videos/<id>.mp4                     RGB, H.264 yuv420p
    flow/<id>.mp4                       OpenCV DIS flow of decoded RGB (datamodules.optical_flow)
    pose/<id>.npy                       (T, K, 3) float32 keypoints: x, y, confidence
    boxes/<id>.json                     per-frame detections with category and score
    summary.md                          counts per subset and class, and the time it took

Each video is generated from its own seed (`SeedSequence([seed, index])`), so the bytes do not
depend on the number of worker processes. `benchmark.json` is written last: its presence means
the benchmark is complete; `benchmark.partial.json` is written first and removed at the end.

The generator never deletes a folder. It writes into an empty folder, or over a benchmark it
made itself (recognised by one of those two records), and then removes only the files that
benchmark's own records say it wrote. A folder holding anything else (a real dataset, features
extracted from an earlier benchmark, a thesis) is refused with the fix, and nothing is written.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from datamodules.annotations import Segment, VideoRecord
from datamodules.optical_flow import FLOW_BOUND_PX, compute_flow, quantize_flow
from datamodules.sources.base import DataError
from datamodules.sources.integrity import write_json_atomic
from datamodules.synthetic.actions import (
    ACTIONS,
    BONES,
    CLASS_NAMES,
    JOINTS,
    MIRROR_PAIRS,
    OBJECT_CATEGORIES,
)
from datamodules.synthetic.kinematics import simulate
from datamodules.synthetic.observations import detections, keypoints
from datamodules.synthetic.render import render_frames
from datamodules.video_io import write_video

GENERATOR_VERSION = 2
SUBSETS = ("training", "validation", "testing")
SUBSET_FRACTIONS = (0.6, 0.2, 0.2)
MANIFEST = "benchmark.json"
PARTIAL = "benchmark.partial.json"
SUMMARY = "summary.md"
MODALITY_PATHS = {
    "rgb": "videos/{video_id}.mp4",
    "flow": "flow/{video_id}.mp4",
    "pose": "pose/{video_id}.npy",
    "boxes": "boxes/{video_id}.json",
}


@dataclass(frozen=True)
class SyntheticConfig:
    """What defines a synthetic benchmark; two runs with equal configs write the same files.

    Args:
        videos: number of untrimmed videos, split 60/20/20 into training/validation/testing.
        seed: random seed of the whole benchmark.
        fps: frame rate of every video.
        size: frame width and height in pixels.
        min_duration: shortest video, seconds.
        max_duration: longest video, seconds.
        walk_speed: actor speed when walking, pixels per frame (motion strength of the benchmark).
        noise_std: standard deviation of the per-pixel sensor noise (0-255 scale).
        max_objects: distractor objects per video are drawn from 1..max_objects.
    """

    videos: int = 160
    seed: int = 0
    fps: float = 10.0
    size: int = 64
    min_duration: float = 16.0
    max_duration: float = 32.0
    walk_speed: float = 1.5
    noise_std: float = 4.0
    max_objects: int = 3

    def __post_init__(self) -> None:
        if self.videos < len(SUBSETS):
            raise ValueError(f"videos must be at least {len(SUBSETS)} (one per subset)")
        if not 0 < self.min_duration <= self.max_duration:
            raise ValueError("need 0 < min_duration <= max_duration")
        if self.size < 32 or self.fps <= 0 or self.max_objects < 1:
            raise ValueError("need size >= 32, fps > 0 and max_objects >= 1")


def video_ids(config: SyntheticConfig | int) -> list[str]:
    """The ids of a benchmark's videos (of a config, or of a count of videos)."""
    count = config if isinstance(config, int) else config.videos
    return [f"syn_{index:04d}" for index in range(count)]


def assign_subsets(config: SyntheticConfig) -> dict[str, str]:
    """Video id -> subset, a fixed random split of the given fractions."""
    ids = video_ids(config)
    order = np.random.default_rng(config.seed).permutation(len(ids))
    n_train = round(SUBSET_FRACTIONS[0] * len(ids))
    n_val = max(1, round(SUBSET_FRACTIONS[1] * len(ids)))
    n_train = min(n_train, len(ids) - n_val - 1)
    subsets = {}
    for rank, index in enumerate(order):
        subsets[ids[index]] = (
            SUBSETS[0] if rank < n_train else SUBSETS[1] if rank < n_train + n_val else SUBSETS[2]
        )
    return subsets


def generate_video(config: SyntheticConfig, index: int, root: Path) -> dict:
    """Render one video and write its four modality files; returns its annotation entry."""
    import cv2
    import decord

    cv2.setNumThreads(1)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, index]))
    video_id = video_ids(config)[index]
    n_frames = round(rng.uniform(config.min_duration, config.max_duration) * config.fps)
    n_objects = int(rng.integers(1, config.max_objects + 1))
    trajectory = simulate(rng, n_frames, config.size, config.fps, config.walk_speed, n_objects)
    frames = render_frames(rng, trajectory, config.size, config.noise_std)

    paths = {
        name: root / template.format(video_id=video_id) for name, template in MODALITY_PATHS.items()
    }
    write_video(paths["rgb"], frames, config.fps)
    decoded = decord.VideoReader(str(paths["rgb"]), ctx=decord.cpu(0), num_threads=1)
    decoded_frames = decoded.get_batch(list(range(len(decoded)))).asnumpy()
    write_video(
        paths["flow"], quantize_flow(compute_flow(decoded_frames)), config.fps, lossless_rgb=True
    )
    paths["pose"].parent.mkdir(parents=True, exist_ok=True)
    np.save(paths["pose"], keypoints(rng, trajectory, config.size))
    boxes = {
        "video_id": video_id,
        "fps": config.fps,
        "width": config.size,
        "height": config.size,
        "categories": list(OBJECT_CATEGORIES),
        "frames": [
            {"frame": t, "labels": labels}
            for t, labels in enumerate(detections(rng, trajectory, config.size))
        ],
    }
    paths["boxes"].parent.mkdir(parents=True, exist_ok=True)
    paths["boxes"].write_text(json.dumps(boxes, separators=(",", ":")))
    return {
        "video_id": video_id,
        "n_frames": n_frames,
        "segments": [
            (label, start / config.fps, end / config.fps)
            for label, start, end in trajectory.segments
        ],
        "objects": sorted({obj.category for obj in trajectory.objects}),
    }


def _records(config: SyntheticConfig, entries: list[dict]) -> list[VideoRecord]:
    subsets = assign_subsets(config)
    return [
        VideoRecord(
            video_id=entry["video_id"],
            subset=subsets[entry["video_id"]],
            duration=entry["n_frames"] / config.fps,
            fps=config.fps,
            segments=tuple(
                Segment(label, round(s, 4), round(e, 4)) for label, s, e in entry["segments"]
            ),
        )
        for entry in entries
    ]


def write_activitynet(path: Path, records: list[VideoRecord]) -> None:
    database = {
        r.video_id: {
            "subset": r.subset,
            "duration": r.duration,
            "fps": r.fps,
            "annotations": [{"segment": [s.start, s.end], "label": s.label} for s in r.segments],
        }
        for r in records
    }
    payload = {
        "version": f"crossdistill-synthetic-{GENERATOR_VERSION}",
        "classes": list(CLASS_NAMES),
        "database": database,
    }
    path.write_text(json.dumps(payload, indent=1))


CHARADES_COLUMNS = (
    "id",
    "subject",
    "scene",
    "quality",
    "relevance",
    "verified",
    "script",
    "objects",
    "descriptions",
    "actions",
    "length",
)


def write_charades(folder: Path, records: list[VideoRecord], objects: dict[str, list[str]]) -> None:
    """One Charades-layout CSV per subset, and the classes file; same segments as the JSON."""
    code = {name: f"c{index:03d}" for index, name in enumerate(CLASS_NAMES)}
    (folder / "charades_classes.txt").write_text("".join(f"{code[n]} {n}\n" for n in CLASS_NAMES))
    for subset in SUBSETS:
        with open(folder / f"charades_{subset}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CHARADES_COLUMNS)
            for r in (r for r in records if r.subset == subset):
                script = (
                    ", then ".join(s.label.replace("_", " ") for s in r.segments) or "stands still"
                )
                actions = ";".join(f"{code[s.label]} {s.start:.2f} {s.end:.2f}" for s in r.segments)
                writer.writerow(
                    [
                        r.video_id,
                        "synthetic",
                        "synthetic scene",
                        7,
                        7,
                        "Yes",
                        f"The actor: {script}.",
                        ";".join(objects[r.video_id]),
                        script,
                        actions,
                        f"{r.duration:.2f}",
                    ]
                )


def manifest(config: SyntheticConfig, records: list[VideoRecord]) -> dict:
    return {
        "name": "crossdistill-synthetic",
        "generator_version": GENERATOR_VERSION,
        "config": asdict(config),
        "fps": config.fps,
        "size": config.size,
        "classes": [
            {"name": a.name, "track": a.track, "description": a.description} for a in ACTIONS
        ],
        "mirror_pairs": [list(pair) for pair in MIRROR_PAIRS],
        "modalities": {
            "rgb": {"path": MODALITY_PATHS["rgb"], "format": "H.264 mp4, yuv420p, crf 18"},
            "flow": {
                "path": MODALITY_PATHS["flow"],
                "format": "lossless H.264 RGB mp4 (libx264rgb); R = x, G = y, B = 128",
                "encoding": "value = clip(128 + flow_px * 127 / bound_px, 1, 255)",
                "bound_px": FLOW_BOUND_PX,
                "method": "OpenCV DIS (medium) of decoded RGB; flow[t]: t -> t+1, last repeats",
            },
            "pose": {
                "path": MODALITY_PATHS["pose"],
                "joints": list(JOINTS),
                "bones": [list(b) for b in BONES],
                "format": "npy (T, K, 3) float32: x, y in pixels, confidence; dropped joint = 0",
            },
            "boxes": {
                "path": MODALITY_PATHS["boxes"],
                "categories": list(OBJECT_CATEGORIES),
                "format": "json: frames[t].labels = [{box2d: {x1,y1,x2,y2}, category, score}]",
            },
        },
        "annotations": {
            "activitynet": "annotations/activitynet.json",
            "charades": {subset: f"annotations/charades_{subset}.csv" for subset in SUBSETS},
            "charades_classes": "annotations/charades_classes.txt",
        },
        "subsets": {subset: sum(r.subset == subset for r in records) for subset in SUBSETS},
    }


class BenchmarkRootError(DataError):
    """A folder the synthetic generator will not write into; nothing was written or deleted."""


def is_complete(root: Path, config: SyntheticConfig) -> bool:
    """True when `root` holds a finished benchmark generated from exactly this config."""
    return root_problem(root, config) is None


def root_problem(root: Path, config: SyntheticConfig) -> str | None:
    """Why `root` does not hold the finished benchmark of `config` (`None` when it does).

    Reads only: the pre-flight check uses it to say what `fit` would have to generate.
    """
    root = Path(root)
    if not root.exists() or not any(root.iterdir()):
        return f"{root} is empty or missing: the benchmark has not been generated yet"
    written = _own_record(root)
    if written is None:
        return f"{root} holds files but no synthetic benchmark ({MANIFEST} of the generator)"
    if not (root / MANIFEST).is_file():
        return f"{root} holds a synthetic benchmark whose generation was interrupted"
    changed = _changed_options(written, config)
    if changed:
        return f"{root} holds a synthetic benchmark generated with other options ({changed})"
    missing = [
        path
        for v in video_ids(config)
        for t in MODALITY_PATHS.values()
        if not (path := root / t.format(video_id=v)).is_file()
    ]
    if missing:
        return f"{root}: {len(missing)} files of the benchmark are missing (e.g. {missing[0]})"
    return None


def _own_record(root: Path) -> dict | None:
    """The manifest (or in-progress record) the generator wrote in `root`, if any."""
    for name in (MANIFEST, PARTIAL):
        path = root / name
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            if "generator_version" in record:
                return record
    return None


def _changed_options(record: dict, config: SyntheticConfig) -> str:
    """`name: old -> new` for each option that differs ('' when the record matches `config`)."""
    wanted = asdict(config)
    written = record["config"]
    changes = [
        f"{key}: {written.get(key)!r} -> {value!r}"
        for key, value in wanted.items()
        if written.get(key) != value
    ]
    if record.get("generator_version") != GENERATOR_VERSION:
        changes.append(
            f"generator version {record.get('generator_version')} -> {GENERATOR_VERSION}"
        )
    return ", ".join(changes)


def _own_files(videos: int) -> set[str]:
    """Paths (relative to the root) of every file a benchmark of `videos` videos writes."""
    files = {MANIFEST, PARTIAL, SUMMARY, "annotations/activitynet.json"}
    files |= {f"annotations/charades_{subset}.csv" for subset in SUBSETS}
    files.add("annotations/charades_classes.txt")
    files |= {t.format(video_id=v) for v in video_ids(videos) for t in MODALITY_PATHS.values()}
    return files


def claim_root(root: Path, config: SyntheticConfig) -> None:
    """Make `root` ready for generating `config`, deleting only files a benchmark of ours wrote.

    Raises `BenchmarkRootError` (and touches nothing) for a folder that is not empty and is not
    a benchmark of ours, or that also holds files the generator did not write.
    """
    root = Path(root)
    if not root.exists() or not any(root.iterdir()):
        return
    record = _own_record(root)
    if record is None:
        raise BenchmarkRootError(
            f"{root} is not empty and holds no synthetic benchmark written by the generator (no "
            f"{MANIFEST} of ours); nothing was written or deleted. Fix: point the synthetic "
            "benchmark's root (--out, or data.init_args.root) at an empty or new folder; for a "
            "real dataset use a data config without a `synthetic:` block"
        )
    ours = _own_files(int(record["config"].get("videos", 0)))
    files = [p for p in sorted(root.rglob("*")) if not p.is_dir()]
    foreign = [p for p in files if p.relative_to(root).as_posix() not in ours]
    if foreign:
        changed = _changed_options(record, config) or "the same options, unfinished"
        shown = ", ".join(str(p.relative_to(root)) for p in foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise BenchmarkRootError(
            f"{root} holds a synthetic benchmark ({changed}) and also {len(foreign)} files the "
            f"generator did not write ({shown}{more}): regenerating would leave them describing "
            "another benchmark, so nothing was written or deleted. Fix: use another folder for "
            "these options, or move those files out first"
        )
    for path in files:
        path.unlink()
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def generate_benchmark(
    root: Path, config: SyntheticConfig, workers: int | None = None
) -> list[VideoRecord]:
    """Write the whole benchmark under `root`: an empty folder or an earlier benchmark of ours
    (see `claim_root`)."""
    root = Path(root)
    claim_root(root, config)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    in_progress = {"generator_version": GENERATOR_VERSION, "config": asdict(config)}
    write_json_atomic(root / PARTIAL, in_progress)
    workers = workers or min(os.cpu_count() or 1, config.videos)
    indices = range(config.videos)
    if workers == 1:
        entries = [generate_video(config, i, root) for i in indices]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            entries = list(
                pool.map(generate_video, [config] * config.videos, indices, [root] * config.videos)
            )
    records = _records(config, entries)
    write_activitynet(root / "annotations" / "activitynet.json", records)
    write_charades(root / "annotations", records, {e["video_id"]: e["objects"] for e in entries})
    write_json_atomic(root / MANIFEST, manifest(config, records))
    (root / PARTIAL).unlink()
    return records


def summarize(records: list[VideoRecord], fps: float) -> str:
    """A Markdown summary: videos, hours and segments per subset; instances and frames per class."""
    lines = [
        "| subset | videos | hours | segments | frames with 2+ labels | idle frames |",
        "|---|---|---|---|---|---|",
    ]
    per_class: dict[str, list[float]] = {name: [] for name in CLASS_NAMES}
    for subset in SUBSETS:
        chosen = [r for r in records if r.subset == subset]
        frames = overlap = idle = 0
        for r in chosen:
            active = _labels_per_frame(r, fps)
            frames += active.size
            overlap += int((active >= 2).sum())
            idle += int((active == 0).sum())
            for s in r.segments:
                per_class[s.label].append(s.end - s.start)
        hours = sum(r.duration or 0.0 for r in chosen) / 3600
        n_segments = sum(len(r.segments) for r in chosen)
        lines.append(
            f"| {subset} | {len(chosen)} | {hours:.2f} | {n_segments} | "
            f"{overlap / max(frames, 1):.1%} | {idle / max(frames, 1):.1%} |"
        )
    lines += ["", "| class | instances | mean length (s) |", "|---|---|---|"]
    for name, lengths in per_class.items():
        lines.append(f"| {name} | {len(lengths)} | {np.mean(lengths) if lengths else 0:.1f} |")
    return "\n".join(lines)


def _labels_per_frame(record: VideoRecord, fps: float) -> np.ndarray:
    count = np.zeros(round((record.duration or 0.0) * fps), dtype=int)
    for s in record.segments:
        count[round(s.start * fps) : round(s.end * fps)] += 1
    return count
