"""`crossdistill extract-features`: a trained encoder's features for whole videos, as `T x D` npy.

This is how I3D features are made for the real benchmarks, done with our own encoders: a
backbone trained on one modality (usually on trimmed clips) runs over every video of every
subset in non-overlapping evaluation tiles, and its per-step embeddings are put back on the
video's grid, optionally averaged over `pool` steps. Feature-level detection (Dai et al.'s PDAN,
Lee et al.'s ActionFormer-style detector) then trains in seconds instead of decoding video.

Output folder: `<video_id>.npy` (float32, `ceil(T / pool) x D`) per video, and `meta.json` with
the `FeatureSource` settings that read them back (`fps`, `stride` and `window` in frames), the
encoder, the checkpoint's SHA-256, the command that wrote the folder, and each file's size and
BLAKE2b digest (`files`). The whole folder is built beside the output (`.<name>.building`) and
swapped in at the end: a run killed half-way leaves the previous folder as it was, never a mix
of two checkpoints' features. An existing output folder is replaced only when it holds nothing
but an earlier extraction's files (those its `meta.json` lists). Files are readable by the
group, for shared datasets. `FeatureSource.check` compares each file with its entry before
training and names this command to rebuild a truncated or altered one.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser
from torch.utils.data import DataLoader

from datamodules.data_check import data_config_parser
from datamodules.datamodule import MultimodalDataModule
from datamodules.dataset import Collate
from datamodules.grid import video_steps
from datamodules.sources import DataError
from datamodules.sources.features import META
from datamodules.sources.integrity import DIGEST, file_digest, save_npy_atomic, write_json_atomic


def build_parser() -> ArgumentParser:
    parser = data_config_parser(
        "crossdistill extract-features",
        "Run a trained encoder (from a TeacherModule checkpoint) over whole videos and write "
        "T x D npy features per video plus meta.json.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="TeacherModule checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--pool", type=int, default=1, help="grid steps averaged per feature")
    return parser


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    datamodule: MultimodalDataModule,
    out: Path,
    pool: int = 1,
    files: dict[str, dict] | None = None,
) -> dict[str, np.ndarray]:
    """Features of every video of the datamodule's subsets, written under `out`; each file's
    size and digest go into `files` (video id -> entry) when given."""
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    encoder.eval()
    out.mkdir(parents=True, exist_ok=True)
    features: dict[str, np.ndarray] = {}
    for role in datamodule.distinct_roles():  # every video once, training parts included
        report = datamodule.inspect(role)
        if report.all_problems:
            raise DataError(
                f"cannot extract features of subset {report.name!r}: "
                f"{report.all_problems[0]}. Fix: run `crossdistill data-check` with this config"
            )
        dataset = datamodule.dataset("test", report.usable)
        loader = DataLoader(
            dataset, batch_size=datamodule.batch_size, collate_fn=Collate(datamodule.modalities)
        )
        for batch in loader:
            embeddings = encoder(batch["inputs"], batch["mask"]).float()  # (B, C, T)
            _place(features, embeddings, batch)
    for video_id, steps in features.items():
        entry = save_npy_atomic(out / f"{video_id}.npy", _pool(steps, pool))
        if files is not None:
            files[video_id] = entry
    return features


def _place(features: dict[str, np.ndarray], embeddings: torch.Tensor, batch: dict) -> None:
    meta = batch["meta"]
    for b, video_id in enumerate(meta["video_id"]):
        stride = float(meta["stride"][b])
        total = video_steps(float(meta["duration"][b]), stride)
        first = round(float(meta["t0"][b]) / stride)
        array = features.setdefault(video_id, np.zeros((total, embeddings.shape[1]), np.float32))
        valid = batch["mask"][b].numpy()
        window = embeddings[b][:, valid].T.numpy()[: max(0, total - first)]
        array[first : first + len(window)] = window


def _pool(steps: np.ndarray, pool: int) -> np.ndarray:
    """Average every `pool` steps (the last group may be shorter)."""
    if pool == 1:
        return steps
    groups = math.ceil(len(steps) / pool)
    return np.stack([steps[g * pool : (g + 1) * pool].mean(axis=0) for g in range(groups)])


def main(argv: list[str]) -> int:
    from lightning_modules.teacher import TeacherModule

    parser = build_parser()
    config = parser.parse_args(argv)
    datamodule = parser.instantiate(config).data
    if datamodule.task != "dense":
        print(
            "extract-features: use a dense data config (evaluation tiles over whole videos)",
            file=sys.stderr,
        )
        return 2
    if datamodule.window_seconds is None:
        print(
            "extract-features: set window_seconds; the features need one stride for all videos",
            file=sys.stderr,
        )
        return 2
    module = TeacherModule.load_from_checkpoint(config.checkpoint, map_location="cpu")
    encoder = module.model.encoder
    out: Path = config.out
    try:
        check_replaceable(out)
    except DataError as err:
        print(f"extract-features: {err}", file=sys.stderr)
        return 1
    staging = out.parent / f".{out.name}.building"
    if staging.exists():
        shutil.rmtree(staging)  # left by a killed run of this command
    files: dict[str, dict] = {}
    features = extract_features(encoder, datamodule, staging, config.pool, files)
    example = next(iter(datamodule.annotation_set.records.values()))
    stride_s = datamodule.window_seconds / datamodule.window_steps
    fps = float(example.fps or 0) or 1.0 / stride_s
    frames = round(stride_s * fps) * config.pool
    meta = {
        "fps": fps,
        "stride": frames,
        "window": frames,
        "feature_dim": int(next(iter(features.values())).shape[1]),
        "videos": len(features),
        "encoder": f"{type(encoder).__module__}.{type(encoder).__name__}",
        "checkpoint": str(config.checkpoint),
        f"checkpoint_{DIGEST}": file_digest(config.checkpoint),
        "data_root": str(datamodule.root),
        "command": shlex.join(["crossdistill", "extract-features", *argv]),
        "files": files,
    }
    write_json_atomic(staging / META, meta)
    swap_in(staging, out)
    print(f"wrote features of {len(features)} videos ({meta['feature_dim']}-d) to {out}")
    return 0


def check_replaceable(out: Path) -> None:
    """Refuse an output folder holding anything but an earlier extraction's files."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"--out {out} is a file. Fix: name a folder")
    present = {p.name for p in out.iterdir()}
    if not present:
        return
    listed: set[str] = set()
    try:
        listed = {f"{video}.npy" for video in json.loads((out / META).read_text())["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    foreign = sorted(present - listed - {META})
    if META not in present or foreign:
        shown = ", ".join(foreign[:3]) or "no meta.json"
        raise DataError(
            f"--out {out} holds files that no earlier extraction there lists ({shown}); "
            "nothing was written. Fix: name an empty or new folder, or move those files out"
        )


def swap_in(staging: Path, out: Path) -> None:
    """Put the finished folder in place of `out`; the previous one is removed only after."""
    previous = out.parent / f".{out.name}.replaced"
    if previous.exists():
        shutil.rmtree(previous)
    if out.exists():
        out.rename(previous)
    staging.rename(out)
    if previous.exists():
        shutil.rmtree(previous)
