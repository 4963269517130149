"""The teacher cache: each frozen teacher run once over whole videos, read back as a modality.

`build_cache` runs a frozen teacher over every video of the train, val and test subsets and
writes its per-step outputs under `<folder>/<teacher>/` (see
`datamodules.sources.teacher_cache`), through the whole-video pass of
`lightning_modules.teachers.whole_videos`; `crossdistill cache-teachers --config ...` does it
for every teacher of a distillation `fit`'s config files. `open_cache` checks a cache against
the checkpoint and the data before a cached fit. A `Cached` teacher source
(`lightning_modules.teachers.provider`) then trains the student from those files: the
datamodule needs to load only the student's inputs (`load: [rgb]`), so no flow is decoded and
no teacher runs.

Decisions, and why:

- **Whole videos.** A teacher runs on one window from 0 covering the video's evaluation tiles
  (`tiles x window_steps` steps, padded past the end exactly like the last tile), so every
  step gets the teacher's output with the whole video as context. The online teacher sees only
  the training window, so near a window's edges (within the receptive field of its temporal
  layers: PDAN's dilations reach 31 steps each way) the two differ; a video no longer than one
  window gives identical outputs, and so does a teacher without temporal context. We keep the
  whole-video teacher rather than caching per window: training windows start on any step, so
  matching them exactly would take one cache per start, and the whole-video teacher is the
  better-informed one (no artificial edges). The difference is measured in
  `experiments/benchmarks/distill_epoch.py` and reported in the README.
- **What is stored.** What the objectives of `lightning_modules.distillation` read from a
  teacher on the grid: `embeddings (C, T)`, per-step `logits (K, T)`, and the `taps` the
  configured objectives name (`tap:`), concatenated along channels (`layout` in the manifest).
  Task extras (`stage_logits`) are not stored. Logits that are not per step (segment pyramids,
  clip logits) cannot be cut by window, so such teachers stay online.
- **The key.** BLAKE2b of: the checkpoint's bytes; the dataset (annotation files and the
  synthetic `benchmark.json`, byte for byte); the grid (`window_seconds`, `window_steps`); and
  the settings of the sources of the modalities the teacher reads (class, path, size, flow
  bound, fps, ...). The media files are not hashed (reading every video before each run would
  cost what the cache saves; rebuild after replacing them). The key is checked at the start of a
  cached fit, and a mismatch names what changed and the command that rebuilds the cache.
- **Augmentation.** The cache holds outputs on un-augmented inputs. Cached mode is accepted
  only when the data's augmentation would leave the teacher's inputs unchanged anyway (then
  online and cached teachers see the same input): crops and flips touch every image modality
  (rgb, flow, keypoints, boxes), colour jitter RGB only; features are never augmented. Any other
  combination is a config error naming the fix (`augment: null` or an `Online` teacher source).
- **Integrity.** Files are written atomically (temporary name, `os.replace`), the old manifest is
  removed before and the new one written last, listing each file's steps, size and digest;
  every file is checked against it before training (`TeacherCacheSource.check`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from datamodules.annotations import VideoRecord
from datamodules.datamodule import MANIFEST as BENCHMARK_MANIFEST
from datamodules.datamodule import MultimodalDataModule
from datamodules.sources.base import DataError, Source
from datamodules.sources.integrity import DIGEST, file_digest, save_npy_atomic, write_json_atomic
from datamodules.sources.teacher_cache import MANIFEST, TeacherCacheSource, read_manifest
from datamodules.transforms import Augment
from lightning_modules.models.outputs import EMBEDDINGS_TAP, ModelOutput
from lightning_modules.teachers.loading import teacher_modalities
from lightning_modules.teachers.whole_videos import (
    checked_subsets,
    stitched_outputs,
    whole_video_dataset,
)

FORMAT = 1
"""Version of the cache layout; a cache of another format is stale."""

Layout = list[tuple[str, int]]
"""`(field, channels)` in storage order: `embeddings`, `logits`, `taps.<name>`."""

ONLINE = "model.init_args.teacher_source: lightning_modules.teachers.Online"
"""The setting that runs the teachers on every batch instead of reading a cache."""

REBUILD_READS = ("--config", "--data", "--model")
"""The options of a `fit` that `crossdistill cache-teachers` reads; the rebuild command keeps
these and passes over the others (trainer, run name, checkpoint, ...)."""

_IMAGE_KINDS = ("rgb", "flow", "keypoints", "boxes")
_NOT_SETTINGS = ("name", "root", "verify_digest")


class TeacherCacheError(DataError):
    """A teacher cache that is missing, stale or incomplete; the message names the rebuild."""


def cache_modality(teacher: str) -> str:
    """The `batch["inputs"]` key of a teacher's cached outputs."""
    return f"teacher_cache:{teacher}"


def objective_taps(taps: Iterable[str | None]) -> list[str]:
    """The teacher taps to store, from the objectives' `tap` values (None: an objective without
    one); embeddings are always stored."""
    return sorted({tap for tap in taps if tap is not None and tap != EMBEDDINGS_TAP})


# the key


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def source_settings(name: str, source: Source, datamodule: MultimodalDataModule) -> dict:
    """A source's settings once bound to the dataset (class and public options)."""
    bound = copy.deepcopy(source)
    bound.bind(name, datamodule.root, datamodule.manifest)
    settings = {
        key: value
        for key, value in vars(bound).items()
        if not key.startswith("_") and key not in _NOT_SETTINGS and _jsonable(value)
    }
    return {"class": f"{type(source).__module__}.{type(source).__qualname__}", **settings}


def dataset_digest(datamodule: MultimodalDataModule) -> str:
    """Digest of what defines the videos: annotation files, reader options, synthetic manifest."""
    digest = hashlib.blake2b(digest_size=16)
    files = [*datamodule.annotation_files, datamodule.root / BENCHMARK_MANIFEST]
    for path in files:
        digest.update(path.name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    options = [datamodule.annotation_format, datamodule.annotation_options]
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def data_fingerprint(
    datamodule: MultimodalDataModule, modalities: Sequence[str], rebuild: str = ""
) -> dict[str, Any]:
    """The data part of the key: dataset, grid, and the sources the teacher reads."""
    configured = datamodule.configured_modalities
    missing = [m for m in modalities if m not in configured]
    if missing:
        raise TeacherCacheError(
            f"the teacher reads modalities {missing}, which this data config does not define. "
            f"Fix: cache-teachers and fit must read the same data config: `{rebuild}`"
        )
    return {
        "dataset": dataset_digest(datamodule),
        "window_seconds": datamodule.window_seconds,
        "window_steps": datamodule.window_steps,
        "sources": {m: source_settings(m, configured[m], datamodule) for m in modalities},
    }


def cache_key(checkpoint_digest: str, data: dict[str, Any]) -> str:
    payload = json.dumps([FORMAT, checkpoint_digest, data], sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


# packing outputs


def pack(output: ModelOutput, taps: Sequence[str]) -> tuple[Tensor, Layout]:
    """A teacher's per-step outputs `(B, D, T)`, and their layout."""
    steps = output.mask.shape[-1]
    fields: list[tuple[str, Tensor]] = [("embeddings", output.embeddings)]
    if not isinstance(output.logits, Tensor) or output.logits.dim() != 3:
        raise ValueError(
            "the teacher's logits are not per step (a segment pyramid or clip logits); only "
            f"per-step teachers can be cached. Fix: use {ONLINE}"
        )
    fields.append(("logits", output.logits))
    for tap in taps:
        if tap not in output.taps:
            raise ValueError(
                f"the objectives read tap {tap!r}; the teacher has {sorted(output.taps)}"
            )
        fields.append((f"taps.{tap}", output.taps[tap]))
    for field, value in fields:
        if value.dim() != 3 or value.shape[-1] != steps:
            raise ValueError(
                f"teacher output {field} {tuple(value.shape)} is not (B, C, T) on the grid of "
                f"{steps} steps, so it cannot be cut by window. Fix: use {ONLINE}"
            )
    layout = [(field, int(value.shape[1])) for field, value in fields]
    return torch.cat([value.float() for _, value in fields], dim=1), layout


def unpack(packed: Tensor, layout: Sequence[Sequence[Any]], mask: Tensor) -> ModelOutput:
    """The `ModelOutput` of cached outputs `(B, D, T)` (no extras)."""
    parts: dict[str, Tensor] = {}
    start = 0
    for field, width in layout:
        parts[str(field)] = packed[:, start : start + int(width)]
        start += int(width)
    taps = {k.removeprefix("taps."): v for k, v in parts.items() if k.startswith("taps.")}
    return ModelOutput(parts["embeddings"], parts["logits"], mask, taps)


# building


def usable_records(datamodule: MultimodalDataModule) -> list[VideoRecord]:
    """Every video of the configured subsets (training parts included) whose teacher inputs
    are readable."""
    reports = checked_subsets(datamodule, "cache teachers", datamodule.missing == "error")
    records = {r.video_id: r for report in reports for r in report.usable}
    return list(records.values())


def build_cache(
    teacher: nn.Module,
    checkpoint: Path,
    datamodule: MultimodalDataModule,
    folder: Path,
    records: Sequence[VideoRecord],
    taps: Sequence[str] = (),
    command: str = "",
) -> dict[str, Any]:
    """Run `teacher` over whole videos, write `folder/<video_id>.npy` and the manifest last."""
    if datamodule.window_seconds is None:
        raise TeacherCacheError(
            "the cache stores every video on one stride, and window_seconds: null gives each "
            f"video its own. Fix: set window_seconds, or use {ONLINE}"
        )
    modalities = teacher_modalities(teacher)
    data = data_fingerprint(datamodule, modalities, command)
    checkpoint_digest = file_digest(checkpoint)
    stride = datamodule.window_seconds / datamodule.window_steps
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # invalid from here until the new one is written
    sources = {m: datamodule.modalities[m] for m in modalities}
    teacher.eval()
    layout: Layout = []

    def packed(batch: dict[str, Any]) -> Tensor:
        nonlocal layout
        values, layout = pack(teacher(batch["inputs"], batch["mask"]), taps)
        return values

    videos: dict[str, dict[str, Any]] = {}
    dataset = whole_video_dataset(datamodule, records, sources)
    for video_id, rows in stitched_outputs(packed, dataset):
        videos[video_id] = {"steps": len(rows), **save_npy_atomic(folder / f"{video_id}.npy", rows)}
    manifest = {
        "format": FORMAT,
        "key": cache_key(checkpoint_digest, data),
        "checkpoint": str(checkpoint),
        f"checkpoint_{DIGEST}": checkpoint_digest,
        "data": data,
        "modalities": {m: sources[m].kind for m in modalities},
        "stride": stride,
        "layout": layout,
        "videos": videos,
        "command": command,
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


# reading back


def rebuild_command(argv: Sequence[str] | None = None, fallback: str = "") -> str:
    """`crossdistill cache-teachers` with this fit's configs and data/model overrides (the
    options `REBUILD_READS` names; the others, the trainer's and the run's, are passed over);
    outside a `crossdistill fit`, `fallback` or a template."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "fit" not in args:
        return fallback or "crossdistill cache-teachers --config <the configs of the fit>"
    keep: list[str] = []
    value_follows = False  # the token before was a kept option whose value is the next token
    for token in args[args.index("fit") + 1 :]:
        option = token.split("=", 1)[0]
        if value_follows or any(option == r or option.startswith(f"{r}.") for r in REBUILD_READS):
            keep.append(token)
            value_follows = not value_follows and "=" not in token
    return shlex.join(["crossdistill", "cache-teachers", *keep])


def _stale_reason(manifest: dict[str, Any], checkpoint: Path, digest: str, data: dict) -> str:
    if manifest.get("format") != FORMAT:
        return f"it has format {manifest.get('format')}, this code reads {FORMAT}"
    if manifest.get(f"checkpoint_{DIGEST}") != digest:
        return (
            f"it was built from checkpoint {manifest.get('checkpoint')} and the teacher is now "
            f"{checkpoint}, whose bytes differ"
        )
    built = manifest.get("data", {})
    if built.get("dataset") != data["dataset"]:
        return "the annotations (or the synthetic benchmark's manifest) changed since"
    for key in ("window_seconds", "window_steps"):
        if built.get(key) != data[key]:
            return f"it was built with {key} {built.get(key)}, the config now has {data[key]}"
    for name, settings in data["sources"].items():
        if built.get("sources", {}).get(name) != settings:
            return (
                f"modality {name!r} is configured differently: built with "
                f"{built.get('sources', {}).get(name)}, now {settings}"
            )
    return "its key differs"


def check_augmentation(augment: Augment | None, kinds: dict[str, str], rebuild: str) -> None:
    """Refuse cached teachers when training augmentation would change a teacher's input."""
    if augment is None:
        return
    touched = [
        name
        for name, kind in kinds.items()
        if (kind in _IMAGE_KINDS and (augment.min_scale < 1 or augment.flip))
        or (kind == "rgb" and augment.colour_jitter > 0)
    ]
    if touched:
        raise TeacherCacheError(
            f"training augmentation {augment} would change the input {touched} of a cached "
            "teacher, but the cache holds outputs on un-augmented input. Fix: set "
            "data.init_args.augment: null (or min_scale: 1 and flip: false, colour_jitter: 0 "
            f"for RGB teachers), or use {ONLINE}"
        )


def open_cache(
    name: str,
    checkpoint: str | Path,
    datamodule: MultimodalDataModule,
    folder: Path,
    taps: Sequence[str] = (),
    rebuild: str | None = None,
    augmentation: bool = True,
) -> TeacherCacheSource:
    """Teacher `name`'s cache, checked against its checkpoint, the data config, the objectives'
    taps and (with `augmentation`) the training augmentation; every problem is a
    `TeacherCacheError` naming the rebuild."""
    checkpoint = Path(checkpoint)
    manifest = read_manifest(folder)
    command = rebuild or rebuild_command(fallback=(manifest or {}).get("command", ""))
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {checkpoint} does not exist. Fix: train the teacher first "
            f"and point teachers.{name} at its .ckpt"
        )
    if manifest is None:
        raise TeacherCacheError(
            f"{folder / MANIFEST}: no cache of teacher {name!r} (never built, or its build was "
            f"interrupted). Fix: build it with `{command}`"
        )
    digest = file_digest(checkpoint)
    data = data_fingerprint(datamodule, list(manifest.get("modalities", {})), command)
    if manifest.get("key") != cache_key(digest, data):
        reason = _stale_reason(manifest, checkpoint, digest, data)
        raise TeacherCacheError(
            f"{folder / MANIFEST}: the cache of teacher {name!r} is stale: {reason}. "
            f"Fix: rebuild it with `{command}`"
        )
    stored = {field for field, _ in manifest["layout"]}
    lacking = [tap for tap in taps if f"taps.{tap}" not in stored]
    if lacking:
        raise TeacherCacheError(
            f"{folder / MANIFEST}: the objectives read taps {lacking} of teacher {name!r}, "
            f"which the cache does not hold. Fix: rebuild it with `{command}`"
        )
    if augmentation:
        check_augmentation(datamodule.augment, manifest["modalities"], command)
    return TeacherCacheSource(folder, command)
