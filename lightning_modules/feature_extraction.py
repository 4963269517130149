"""A trained encoder's features for whole videos, as `T x D` npy (`crossdistill extract-features`).

This is how I3D features are made for the real benchmarks, done with our own encoders: a
backbone trained on one modality (usually on trimmed clips) runs over every video of every
subset in non-overlapping evaluation tiles, and its per-step embeddings are put back on the
video's grid (the whole-video pass of `lightning_modules.teachers.whole_videos`), optionally
averaged over `pool` steps. Feature-level detection (Dai et al.'s PDAN,
Lee et al.'s ActionFormer-style detector) then trains in seconds instead of decoding video.

Output folder: `<video_id>.npy` (float32, `ceil(T / pool) x D`) per video, and `meta.json` with
the `FeatureSource` settings that read them back (`fps`, `stride` and `window` in frames), the
encoder, the checkpoint's digest, the command that wrote the folder, and each file's size and
BLAKE2b digest (`files`). The whole folder is built beside the output (`.<name>.building`) and
swapped in at the end: a run killed half-way leaves the previous folder as it was, never a mix
of two checkpoints' features. An existing output folder is replaced only when it holds nothing
but an earlier extraction's files (those its `meta.json` lists). Files are readable by the
group, for shared datasets. `FeatureSource.check` compares each file with its entry before
training and names the command to rebuild a truncated or altered one.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from datamodules.datamodule import MultimodalDataModule
from datamodules.sources import DataError
from datamodules.sources.features import META
from datamodules.sources.integrity import save_npy_atomic
from lightning_modules.teachers.whole_videos import checked_subsets, stitched_outputs


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

    def embeddings(batch: dict) -> torch.Tensor:
        return encoder(batch["inputs"], batch["mask"])  # (B, C, T)

    features: dict[str, np.ndarray] = {}
    for report in checked_subsets(datamodule, "extract features"):  # training parts included
        dataset = datamodule.dataset("test", report.usable)
        features.update(stitched_outputs(embeddings, dataset, datamodule.batch_size))
    for video_id, steps in features.items():
        entry = save_npy_atomic(out / f"{video_id}.npy", _pool(steps, pool))
        if files is not None:
            files[video_id] = entry
    return features


def _pool(steps: np.ndarray, pool: int) -> np.ndarray:
    """Average every `pool` steps (the last group may be shorter)."""
    if pool == 1:
        return steps
    groups = math.ceil(len(steps) / pool)
    return np.stack([steps[g * pool : (g + 1) * pool].mean(axis=0) for g in range(groups)])


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
