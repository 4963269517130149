"""`MultimodalDataModule`: the one LightningDataModule, configured from YAML.

It reads the annotations (any format of `datamodules.annotations`), binds each configured
modality source to the dataset folder `root`, checks every video of the subsets a stage needs
before any DataLoader starts (so a broken file is reported from the main process, by name,
with its fix), and serves windows of the chosen task (`datamodules.tasks` declares each
task's targets and whether it takes clip or video windows):

- video windows: fixed windows (training: random; evaluation: tiles), or with
  `window_seconds: null` one window of `window_steps` steps per video spanning it, each video
  on its own stride (ActivityNet's fixed-length features); `dense` (per-step multi-label
  targets) and `segments` (segments in seconds from the window start) take these;
- clip windows: one per annotated clip, `window_steps` frames sampled uniformly (`clips`).

For the synthetic benchmark (`root` holds `benchmark.json`) the annotation file, every
modality's path and their format details come from the manifest; a config only picks
modalities and windows. Evaluation under DDP is exact: evaluation windows are sharded over ranks
in blocks without padding (`EvalShardSampler`), so no window is evaluated twice, and every step
of every video lies in exactly one window's mask.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Literal

import cv2
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from datamodules.annotations import AnnotationSet, VideoRecord, read_annotations
from datamodules.dataset import Collate, UntrimmedDataset
from datamodules.held_out import held_out_digest, split_held_out
from datamodules.sampling import (
    ClipWindows,
    EvalShardSampler,
    EvalWindows,
    TrainSampler,
    TrainWindows,
    VideoWindows,
    WindowSampler,
    tiles,
)
from datamodules.sources.base import DataError, Problem, Source
from datamodules.synthetic.generator import SyntheticConfig, generate_benchmark, is_complete
from datamodules.tasks import ClassNames, task_data
from datamodules.transforms import Augment, JointTransform

log = logging.getLogger(__name__)

MANIFEST = "benchmark.json"
STAGE_SUBSETS = {
    "fit": ("train", "held_out", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


@dataclass
class SubsetReport:
    """What checking a subset found: its videos, their problems, and per-modality coverage."""

    name: str
    records: list[VideoRecord] = field(default_factory=list)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)

    @property
    def usable(self) -> list[VideoRecord]:
        return [r for r in self.records if not self.problems.get(r.video_id)]

    @property
    def all_problems(self) -> list[Problem]:
        return [p for found in self.problems.values() for p in found]


class MultimodalDataModule(pl.LightningDataModule):
    """Untrimmed (or trimmed) videos with any set of modalities, for one task.

    Args:
        root: the dataset folder; relative file paths are under it.
        modalities: modality name -> source (`datamodules.sources`); the names are the keys of
            `batch["inputs"]`. For the synthetic benchmark use rgb, flow, pose and boxes.
        load: the configured modalities this run reads (default: all), so that one data
            config serves every teacher and student: a flow teacher sets `load: [flow]`.
        synthetic: generate the synthetic benchmark with these options under `root` unless a
            complete one generated with them is there (self-contained smoke configs and demos).
        task: the task's name, a key of `datamodules.tasks.TASK_DATA`: `dense`, `segments` or
            `clips`; its `TaskData` builds the targets and chooses the windows.
        annotations: annotation file(s) under root (several are merged, e.g. Charades' train
            and test CSVs); default for the synthetic benchmark: its ActivityNet JSON.
        annotation_format: reader name (`datamodules.annotations.READERS`).
        annotation_options: extra reader arguments, e.g. `classes_file` (relative file paths
            are under root, as the annotation files are).
        train_subset, val_subset, test_subset: subset names as the annotations spell them
            (`val_subset: null` trains without validation; predict uses the test subset).
        val_fraction: validate on this fraction of the training videos instead of a subset
            (chosen by a hash of their ids, left out of training; needs `val_subset: null`):
            for benchmarks whose only labelled split besides training is the test split, so
            that the best checkpoint is not chosen on the test videos.
        window_seconds: window length (dense and segments; clips use each clip's extent);
            `null`: each video is one window of `window_steps` steps spanning its duration.
        window_steps: steps per window (frames per clip for clips).
        eval_whole_videos: evaluate every video as one window (of the smallest multiple of the
            window that holds the longest video of the split, padded), instead of tiles of one
            window: ActionFormer scores each THUMOS14 test video whole, and tiles would cut the
            ground-truth instances that cross a tile border.
        centre_on_action: probability that a training window is centred on an annotated action.
        test_views: temporal views per clip at evaluation (clips).
        augment: training augmentation, `null` for none.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        missing: `error` stops at any broken or missing file; `skip` leaves those videos out,
            counted and logged.
        held_out_fraction: set this fraction of the training videos aside (chosen by a hash of
            their ids, `datamodules.held_out`): a teacher's training leaves them out and
            `held_out_dataloader` serves them, evaluated like validation. Radevski et al.'s
            held-out teacher weights are fitted on them; train the teachers and the student
            with the same fraction (the student, a `DistillModule`, trains on every training
            video, `include_held_out_in_training`).
    """

    def __init__(
        self,
        root: str | Path,
        modalities: dict[str, Source],
        task: str = "dense",
        annotations: str | list[str] | None = None,
        annotation_format: str | None = None,
        annotation_options: dict[str, Any] | None = None,
        train_subset: str = "training",
        val_subset: str | None = "validation",
        test_subset: str = "testing",
        window_seconds: float | None = None,
        window_steps: int = 64,
        eval_whole_videos: bool = False,
        centre_on_action: float = 0.0,
        test_views: int = 1,
        augment: Augment | None = Augment(),  # noqa: B008 (frozen dataclass, safe to share)
        batch_size: int = 8,
        num_workers: int = 2,
        missing: Literal["error", "skip"] = "error",
        load: list[str] | None = None,
        synthetic: SyntheticConfig | None = None,
        held_out_fraction: float = 0.0,
        val_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if not modalities:
            raise DataError("no modalities configured. Fix: list at least one under modalities")
        unknown = sorted(set(load or ()) - set(modalities))
        if unknown:
            raise DataError(
                f"load names {unknown}, which are not configured modalities. Fix: use some of "
                f"{sorted(modalities)}"
            )
        self.task = task
        self.task_data = task_data(task)
        # every configured source, loaded or not: a teacher cache is keyed by the settings of
        # the modalities its teacher read, which a cached distillation run no longer loads
        self.configured_modalities = dict(modalities)
        if load is not None:
            modalities = {name: modalities[name] for name in load}
        if window_seconds is not None and window_seconds <= 0:
            raise DataError(
                f"window_seconds must be > 0 (or null for one window per video), got "
                f"{window_seconds}. Fix: set window_seconds"
            )
        if window_seconds is None and centre_on_action > 0 and not self.task_data.per_clip:
            raise DataError(
                "centre_on_action needs fixed-length windows; with window_seconds: null every "
                "window is a whole video. Fix: set centre_on_action: 0 or a window_seconds"
            )
        if not 0.0 <= held_out_fraction < 1.0:
            raise DataError(
                f"held_out_fraction must be in [0, 1), got {held_out_fraction}. Fix: e.g. 0.2, or "
                "0 to train on every training video"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(
                f"val_fraction must be in [0, 1), got {val_fraction}. Fix: e.g. 0.1, or 0 to "
                "validate on val_subset"
            )
        if val_fraction > 0 and val_subset is not None:
            raise DataError(
                f"val_fraction {val_fraction} draws validation from the training videos, but "
                f"val_subset is {val_subset!r} too. Fix: set val_subset: null (or val_fraction: 0)"
            )
        if window_steps < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError("need window_steps >= 1, batch_size >= 1 and num_workers >= 0")
        self.root = Path(root)
        if synthetic is not None and not is_complete(self.root, synthetic):
            log.info("generating the synthetic benchmark under %s", self.root)
            generate_benchmark(self.root, synthetic)
        if not self.root.is_dir():
            raise DataError(
                f"data root {self.root} ({self.root.resolve()}) does not exist or is not a "
                "folder. Fix: set data.init_args.root to the dataset's folder"
            )
        self.manifest = _read_manifest(self.root)
        self.modalities = dict(modalities)
        for name, source in self.modalities.items():
            source.bind(name, self.root, self.manifest)
        self.annotation_files, self.annotation_format = self._annotation_files(
            annotations, annotation_format
        )
        self.annotation_options = dict(annotation_options or {})
        self.val_fraction = val_fraction
        if val_fraction > 0:  # the validation role is a part of the training subset
            val_subset = train_subset
        self.subsets = {"train": train_subset, "val": val_subset, "test": test_subset}
        # the held-out role is a part of the training subset
        self.subsets["held_out"] = train_subset if held_out_fraction > 0 else None
        self.held_out_fraction = held_out_fraction
        self.train_includes_held_out = False
        self.window_seconds = window_seconds
        self.window_steps = window_steps
        self.eval_whole_videos = eval_whole_videos
        self.centre_on_action = centre_on_action
        self.test_views = test_views
        self.augment = augment
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.missing = missing
        self.datasets: dict[str, UntrimmedDataset] = {}
        self.reports: dict[str, SubsetReport] = {}
        self.attached: dict[str, Source] = {}
        self.evaluated: tuple[str, ...] | None = None

    def _annotation_files(
        self, annotations: str | list[str] | None, annotation_format: str | None
    ) -> tuple[list[Path], str]:
        if annotations is None and self.manifest is not None:
            return [self.root / self.manifest["annotations"]["activitynet"]], "activitynet"
        if annotations is None or annotation_format is None:
            raise DataError(
                f"{self.root}: no {MANIFEST} here, so the annotations must be named. Fix: set "
                "annotations (file under root) and annotation_format (e.g. activitynet)"
            )
        files = [annotations] if isinstance(annotations, str) else list(annotations)
        return [self.root / f for f in files], annotation_format

    # what models are built from

    @cached_property
    def annotation_set(self) -> AnnotationSet:
        """All videos and the vocabulary, read once (AnnotationError names file, video, label)."""
        sets = [
            read_annotations(path, self.annotation_format, self.root, **self.annotation_options)
            for path in self.annotation_files
        ]
        return _merge(sets)

    @property
    def class_names(self) -> ClassNames:
        """Names of the classes of the head(s), in target-index order (a dict for verb/noun)."""
        return self.task_data.class_names(self.annotation_set)

    @property
    def num_classes(self) -> int | dict[str, int]:
        """Classes of the head(s): an int, or `{"verb": V, "noun": N}` for verb/noun clips."""
        names = self.class_names
        if isinstance(names, dict):
            return {head: len(heads) for head, heads in names.items()}
        return len(names)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each `batch["inputs"]` tensor without the batch axis (T = window_steps)."""
        example = next(iter(self.annotation_set.records.values()))
        shapes: dict[str, tuple[int, ...]] = {}
        for source in self.modalities.values():
            shapes.update(source.sample_shapes(self.window_steps, example))
        return shapes

    # checking

    def subset_records(self, role: str) -> list[VideoRecord]:
        """The videos of a role (train/held_out/val/test): its subset's, the training subset
        split by `held_out_fraction` for train and held_out; a name not in the file is an
        error."""
        drawn = role == "held_out" or (role == "val" and self.val_fraction > 0)
        key = "train" if drawn else role
        try:
            records = list(self.annotation_set.subset(str(self.subsets[key])).records.values())
        except (KeyError, ValueError) as err:  # the reader's message names the subsets it has
            raise DataError(f"{key}_subset: {err.args[0]}") from None
        if key != "train":
            return records
        if self.val_fraction > 0:
            records, validation = split_held_out(records, self.val_fraction, "val_fraction")
            if role == "val":
                return validation
        if self.held_out_fraction == 0 or (role == "train" and self.train_includes_held_out):
            return records
        return split_held_out(records, self.held_out_fraction)[role == "held_out"]

    def include_held_out_in_training(self) -> None:
        """Train on every training video, the held-out part included: what a distilled
        student does, while its teachers were trained without that part (call after
        `setup("fit")`; the held-out loader still serves the part for fitting weights)."""
        if self.held_out_fraction == 0 or self.train_includes_held_out:
            return
        self.train_includes_held_out = True
        if "train" not in self.reports or "held_out" not in self.reports:
            return  # not set up yet: setup builds training from every training video
        usable = {
            r.video_id: r for role in ("train", "held_out") for r in self.reports[role].usable
        }
        records = [usable[r.video_id] for r in self.subset_records("train") if r.video_id in usable]
        self.datasets["train"] = self.dataset("train", records)

    def evaluate_only(self, modalities: Sequence[str]) -> None:
        """Load only `modalities` for validation, test and predict: what the module being
        evaluated reads (a distilled student reads RGB; decoding its teachers' flow and pose
        there cost time for nothing). Modalities not loaded are ignored; the held-out videos,
        scored by the teachers, keep every modality. The module calls it when it sets up."""
        self.evaluated = tuple(name for name in modalities if name in self.modalities) or None

    @cached_property
    def held_out_digest(self) -> str | None:
        """Fingerprint of the held-out videos (None without any), recorded in a teacher's
        checkpoint so that a student can check its teachers never trained on them."""
        if self.held_out_fraction == 0:
            return None
        return held_out_digest(self.subset_records("held_out"))

    def inspect(self, role: str) -> SubsetReport:
        """Check every video of a role (train/held_out/val/test) with every source."""
        return self.check_records(self.role_name(role), self.subset_records(role))

    def role_name(self, role: str) -> str:
        """The subset a role reads, as reports name it ("training (held out)" for a part)."""
        part = {"held_out": " (held out)", "val": " (validation part)" if self.val_fraction else ""}
        return str(self.subsets[role]) + part.get(role, "")

    def distinct_roles(self) -> list[str]:
        """Roles whose videos together are every video of the configured subsets, each once:
        the parts of the training subset, and each other subset by name (validation and test
        are often the same)."""
        roles: dict[str, str] = {}
        for role in ("train", "held_out", "val", "test"):
            if self.subsets[role] is not None:
                roles.setdefault(self.role_name(role), role)
        return list(roles.values())

    def check_records(self, name: str, records: list[VideoRecord]) -> SubsetReport:
        """Check videos with every source (in threads: the work is mostly I/O and decoding);
        records without a duration get one from their files."""
        report = SubsetReport(name, coverage=dict.fromkeys(self.modalities, 0))
        workers = min(8, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(workers) as pool:
            for record, problems in pool.map(self._check_video, records):
                report.records.append(record)
                report.problems[record.video_id] = problems
        for source in self.modalities.values():  # e.g. one feature file of another width
            for video_id, problems in source.check_across(report.records).items():
                report.problems[video_id] = [*report.problems.get(video_id, []), *problems]
        for record in report.records:
            broken = {p.modality for p in report.problems[record.video_id]}
            for name in self.modalities:
                report.coverage[name] += name not in broken
        return report

    def _check_video(self, record: VideoRecord) -> tuple[VideoRecord, list[Problem]]:
        problems: list[Problem] = []
        if record.duration is None:
            record, problems = self._with_duration(record)
        for source in self.modalities.values():
            problems += source.check(record)
        return record, problems

    def _with_duration(self, record: VideoRecord) -> tuple[VideoRecord, list[Problem]]:
        """A record without an annotated duration takes its first readable modality's length."""
        for source in self.modalities.values():
            try:
                duration = source.duration(record)
            except Exception:
                continue
            if duration:
                return replace(record, duration=duration), []
        problem = Problem(
            str(self.annotation_files[0]),
            "no duration in the annotations and no modality file to read one from",
            "give the video's duration in the annotation file, or restore its files",
            record.video_id,
        )
        return record, [problem]

    # LightningDataModule

    def setup(self, stage: str) -> None:
        for role in STAGE_SUBSETS[stage]:
            if self.subsets[role] is None or role in self.datasets:
                continue
            report = self.inspect(role)
            self.reports[role] = report
            problems = report.all_problems
            if problems and self.missing == "error":
                raise DataError(_problem_summary(report, problems))
            if problems:
                skipped = sorted({p.video_id or "?" for p in problems})
                log.warning(
                    "missing: skip: left out %d of %d %s videos with problems: %s",
                    len(skipped),
                    len(report.records),
                    report.name,
                    ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else ""),
                )
            if not report.usable:
                raise DataError(
                    f"subset {report.name!r} has no usable videos. Fix: check the files listed "
                    "by `crossdistill data-check` with this config"
                )
            self.datasets[role] = self.dataset(role, report.usable)

    def dataset(self, role: str, records: list[VideoRecord]) -> UntrimmedDataset:
        """The dataset of a role over `records` (which must have durations)."""
        train = role == "train"
        windows: WindowSampler
        if self.task_data.per_clip:
            windows = ClipWindows(records, self.window_steps, self.test_views, train)
        elif self.window_seconds is None:
            windows = VideoWindows(records, self.window_steps)
        elif train:
            windows = TrainWindows(
                records, self.window_seconds, self.window_steps, self.centre_on_action
            )
        else:
            widen = 1
            if self.eval_whole_videos:
                seconds, steps = self.window_seconds, self.window_steps
                widen = max(tiles(float(r.duration or 0.0), seconds, steps) for r in records)
            windows = EvalWindows(records, self.window_seconds * widen, self.window_steps * widen)
        found = self.annotation_set
        dataset = UntrimmedDataset(
            windows,
            self.modalities,
            self.task_data,
            found.classes,
            JointTransform(self.modalities, self.augment if train else None),
            found.verb_classes,
            found.noun_classes,
            self.mirror_labels(found.classes) if train else None,
        )
        dataset.skip_broken = self.missing == "skip"
        return dataset

    def mirror_labels(self, classes: tuple[str, ...]) -> dict[str, str]:
        """Label swaps of a horizontal flip: the config's pairs, else the manifest's."""
        if self.augment is None or not self.augment.flip:
            return {}
        pairs = self.augment.mirror_pairs or (self.manifest or {}).get("mirror_pairs", ())
        mirror: dict[str, str] = {}
        for left, right in pairs:
            for name in (left, right):
                if name not in classes:
                    raise DataError(
                        f"augment.mirror_pairs names {name!r}, which is not a class of the "
                        f"dataset. Fix: use one of {list(classes)}"
                    )
            mirror.update({left: right, right: left})
        return mirror

    def attach_source(self, name: str, source: Source, roles: tuple[str, ...] = ("train",)) -> None:
        """Add a modality that a module supplies to the datasets of `roles` built by `setup`:
        bound to root, checked on every video of those datasets (any problem is a `DataError`
        naming the file and its fix, before training), then loaded with the configured
        modalities. Its one caller is `lightning_modules.teachers.CachedTeachers.attach`, which
        adds the teacher cache when the DistillModule sets up: Lightning sets the datamodule up
        first, and only the module knows its teachers."""
        if name in self.modalities:
            raise DataError(f"modality {name!r} is configured already; attach under another name")
        source.bind(name, self.root, self.manifest)
        for role in roles:
            dataset = self.datasets[role]
            records = getattr(dataset.sampler, "records", [])
            problems = [problem for record in records for problem in source.check(record)]
            if problems:
                lines = [f"modality {name!r}, subset {self.subsets[role]!r}:"]
                lines += [f"  {problem}" for problem in problems[:10]]
                if len(problems) > 10:
                    lines.append(f"  ... and {len(problems) - 10} more")
                raise DataError("\n".join(lines))
            dataset.sources[name] = source
        self.attached[name] = source

    @property
    def skipped(self) -> dict[str, list[str]]:
        """Videos left out per subset under `missing: skip`."""
        return {
            report.name: sorted({p.video_id or "?" for p in report.all_problems})
            for report in self.reports.values()
        }

    def _loader(
        self, role: str, loader: type[DataLoader] = DataLoader, **kwargs: Any
    ) -> DataLoader:
        if self.num_workers > 0:
            # OpenCV's thread pool does not survive a fork: a worker that resized the pool it
            # inherited waited forever for the parent's pool threads. The workers are the
            # parallelism, so OpenCV runs on one thread from here on, inherited by them
            cv2.setNumThreads(1)
        dataset = self.datasets[role]
        if role in ("val", "test") and self.evaluated is not None:
            dataset = dataset.reading(self.evaluated)
        rank = _world(self.trainer)[1]
        return loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=Collate({**self.modalities, **self.attached}, self.task_data),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=partial(_init_worker, rank=rank) if self.num_workers > 0 else None,
            # its own generator: starting a pass then leaves the global torch stream (dropout)
            # alone, so a resumed run continues that stream as the uninterrupted one does
            generator=torch.Generator().manual_seed(_seed()),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        """Batches in the order of a `TrainSampler` (the same shards as Lightning's distributed
        sampler), from a loader that Lightning checkpoints and resumes mid-epoch."""
        world, rank = _world(self.trainer)
        # `use_distributed_sampler: false` leaves sharding out, as Lightning would
        if (
            self.trainer is not None
            and not self.trainer._accelerator_connector.use_distributed_sampler
        ):
            world, rank = 1, 0
        sampler = TrainSampler(self.datasets["train"], world, rank, seed=_seed())
        return self._loader("train", ResumableLoader, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.subsets["val"] is None else self._eval_loader("val")

    def held_out_dataloader(self) -> DataLoader:
        """The held-out training videos, windowed and sharded like validation."""
        if self.held_out_fraction == 0:
            raise DataError(
                "no held-out videos: held_out_fraction is 0. Fix: set "
                "data.init_args.held_out_fraction (e.g. 0.2) for the student and its teachers"
            )
        return self._eval_loader("held_out")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, role: str) -> DataLoader:
        world, rank = _world(self.trainer)
        return self._loader(role, sampler=EvalShardSampler(self.datasets[role], world, rank))


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _merge(sets: list[AnnotationSet]) -> AnnotationSet:
    """One set from several files of one dataset (same vocabulary, distinct videos).

    EPIC-KITCHENS files share the published verb and noun lists, which the heads index; their
    `classes` are the verb-noun pairs each file happens to hold, so those are united.
    """
    merged = sets[0]
    for other in sets[1:]:
        pairs = bool(merged.verb_classes) and (merged.verb_classes, merged.noun_classes) == (
            other.verb_classes,
            other.noun_classes,
        )
        if pairs:
            merged = replace(merged, classes=tuple(sorted({*merged.classes, *other.classes})))
        elif other.classes != merged.classes:
            raise DataError(
                f"{other.source}: its classes differ from those of {merged.source}. Fix: give "
                "files of one dataset, with one class list"
            )
        repeated = sorted(set(other.records) & set(merged.records))
        if repeated:
            raise DataError(
                f"{other.source}: videos {repeated[:5]} are also in {merged.source}. Fix: give "
                "each video in one file only"
            )
        merged = replace(merged, records={**merged.records, **other.records})
    return merged


def _problem_summary(report: SubsetReport, problems: list[Problem], limit: int = 20) -> str:
    lines = [
        f"{len(problems)} problem(s) in subset {report.name!r} "
        f"({len({p.video_id for p in problems})} of {len(report.records)} videos):"
    ]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more; `crossdistill data-check` lists all")
    lines.append("Or set `missing: skip` to leave these videos out.")
    return "\n".join(lines)


def _world(trainer: pl.Trainer | None) -> tuple[int, int]:
    """(world size, global rank): the trainer's when attached, else torch.distributed's."""
    if trainer is not None:
        return trainer.world_size, trainer.global_rank
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def _seed() -> int:
    """The run's seed (`seed_everything`), as Lightning's own distributed sampler reads it."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def _kill_leftover_workers() -> None:
    """At exit, kill the daemonic children still alive (the workers of a loader whose iterator
    outlived its pass, e.g. one that raised): the interpreter's own exit handler terminates
    them with SIGTERM, which our workers ignore (`_init_worker`), and then waits for them
    forever. Registered after multiprocessing's handler, so it runs before it."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join()


atexit.register(_kill_leftover_workers)


def _init_worker(worker_id: int, rank: int) -> None:
    """Workers are the parallelism: one thread each for torch and OpenCV. Setting a
    `worker_init_fn` keeps Lightning from adding its own, so this one also seeds the worker's
    torch, numpy and Python generators from (seed, worker, rank) as Lightning's does; without
    the rank, workers of different ranks would draw the same numbers.

    Workers ignore the preemption signals: `scancel` and systemd signal the whole process
    group, and a worker killed by its SIGTERM would take the run down before the main process
    reaches the step boundary where it checkpoints and exits with status 75 (the main process
    shuts its workers down itself)."""
    torch.set_num_threads(1)  # OpenCV's one thread comes from the parent (`_loader`)
    for name in ("SIGTERM", "SIGUSR1"):
        signal.signal(signal.Signals[name], signal.SIG_IGN)
    pl_worker_init_function(worker_id, rank)


class ResumableLoader(DataLoader):
    """The training DataLoader, resumable within an epoch.

    Lightning saves `state_dict` (the epoch and how many samples of this rank's share the loop
    has taken in this pass) with every checkpoint, and when it resumes one written within an
    epoch it hands it to `load_state_dict` before the first batch: the pass of that epoch then
    starts after the samples already trained on. Sized loaders are not read ahead by Lightning,
    so the batches this loader has yielded are those the loop has taken.
    """

    taken = 0
    _resume: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": getattr(self.sampler, "epoch", 0), "taken": self.taken}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict)

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        self.taken = 0
        if isinstance(self.sampler, TrainSampler) and resume is not None:
            # Lightning sets the epoch before the first batch, which runs this
            if resume.get("epoch") == self.sampler.epoch:
                self.taken = self.sampler.start = int(resume.get("taken", 0))
        for batch in super().__iter__():
            self.taken += self.batch_size or 1
            yield batch
