"""A trained encoder's features for whole videos, as `T x D` npy (`crossdistill extract-features`).

This is how I3D features are made for the real benchmarks, done with our own encoders: a
backbone trained on one modality (usually on trimmed clips) runs over every video of every
subset in non-overlapping evaluation tiles, and its per-step embeddings are put back on the
video's grid (the whole-video pass of `lightning_modules.teachers.whole_videos`), optionally
averaged over `pool` steps. Feature-level detection (Dai et al.'s PDAN,
Lee et al.'s ActionFormer-style detector) then trains in seconds instead of decoding video.

I3D-style snippets (`SnippetSpec`, `--snippet-frames W --snippet-stride S`): feature `i` of a
video is the encoder over the `W` frames starting at frame `i * S` (at the video's fps), its
outputs averaged over the snippet's frames; a video of `N` frames has `max(1, (N - W) // S + 1)`
features, snippets past the last frame left out. That is how the I3D features of THUMOS14
(ActionFormer: 16-frame windows every 4 frames at 30 fps) were made, and what `FeatureSource`
reads with the same `stride`, `window` and `fps`: feature `i` centred at `(i * S + W / 2) / fps`.

Output folder: `<video_id>.npy` (float32, `ceil(T / pool) x D`, or one row per snippet) per
video, and `meta.json` with the `FeatureSource` settings that read them back (`fps`, `stride`
and `window` in frames), the encoder, the checkpoint's (or backbone weights file's) digest, the
command that wrote the folder, and each file's size and
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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tqdm import tqdm

from datamodules.datamodule import MultimodalDataModule
from datamodules.sources import DataError
from datamodules.sources.features import META
from datamodules.sources.integrity import save_npy_atomic
from lightning_modules.teachers.whole_videos import (
    Snippets,
    checked_subsets,
    snippet_outputs,
    stitched_outputs,
    whole_video_dataset,
)


@dataclass(frozen=True)
class SnippetSpec:
    """I3D-style snippets: one feature per `stride` frames, from the `window` frames starting
    there, at `fps` (None: each video's annotated rate); see `whole_videos.Snippets`."""

    stride: int
    window: int
    fps: float | None = None


def extract_features(
    encoder: torch.nn.Module,
    datamodule: MultimodalDataModule,
    out: Path,
    pool: int = 1,
    files: dict[str, dict] | None = None,
    snippets: SnippetSpec | None = None,
    progress: Callable[[str, np.ndarray, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Features of every video of the datamodule's subsets, written under `out`: on the data's
    grid (each `pool` steps averaged), or one per snippet (the encoder's outputs averaged over
    the snippet's valid frames); each file's size and digest go into `files` (video id ->
    entry) when given, and `progress` hears of each video as it is written (with the number of
    videos)."""
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    encoder.eval()
    out.mkdir(parents=True, exist_ok=True)

    def embeddings(batch: dict) -> torch.Tensor:
        return encoder(batch["inputs"], batch["mask"])  # (B, C, T)

    def pooled(batch: dict) -> torch.Tensor:
        mask = batch["mask"].to(torch.float32)[:, None, :]  # (B, 1, T)
        return (embeddings(batch) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)

    features: dict[str, np.ndarray] = {}
    reports = checked_subsets(datamodule, "extract features")  # training parts included
    total = sum(len(report.usable) for report in reports)
    for report in reports:
        if snippets is None:
            dataset = datamodule.dataset("test", report.usable)
            videos = stitched_outputs(embeddings, dataset, datamodule.batch_size)
        else:
            windows = Snippets(report.usable, snippets.stride, snippets.window, snippets.fps)
            dataset = whole_video_dataset(datamodule, report.usable, datamodule.modalities, windows)
            videos = snippet_outputs(pooled, dataset, datamodule.batch_size)
        for video_id, steps in videos:
            features[video_id] = steps = _pool(steps, pool)
            entry = save_npy_atomic(out / f"{video_id}.npy", steps)
            if files is not None:
                files[video_id] = entry
            if progress is not None:
                progress(video_id, steps, total)
    return features


def progress_printer(stream: TextIO | None = None) -> Callable[[str, np.ndarray, int], None]:
    """A `progress` for `extract_features`: a tqdm bar on a terminal, else one line per video."""
    stream = stream or sys.stdout
    bar: tqdm | None = None
    start, done = time.monotonic(), 0

    def report(video_id: str, features: np.ndarray, total: int) -> None:
        nonlocal bar, done
        done += 1
        if bar is None and stream.isatty():
            bar = tqdm(total=total, unit="video", file=stream)
        if bar is not None:
            bar.set_postfix_str(video_id, refresh=False)
            bar.update(1)
            if done == total:
                bar.close()
            return
        line = f"{video_id}: {features.shape[0]} x {features.shape[1]} features"
        print(
            f"[{done}/{total}] {line} ({time.monotonic() - start:.1f} s)", file=stream, flush=True
        )

    return report


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
