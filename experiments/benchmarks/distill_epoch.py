"""Distillation epochs with online teachers against cached teachers, in one run.

The setting is the one the cache is for (Dai et al.'s): an RGB student that is cheap to train
(PDAN over RGB snippet features), a flow teacher that is expensive to run (the dense flow teacher
of `configs/teacher/dense_flow.yaml`: a (2+1)D CNN on decoded 64x64 flow frames, then PDAN), and
the three losses of `configs/distill/dense_features_dai21.yaml`. The teacher trains for
`--teacher-steps` steps only (this measures time; the student metric only has to agree between
the modes). The RGB features come from a fixed, untrained 3D CNN. With `--student frames` the
student is an RGB VideoCNN on 32x32 frames instead (its own decoding and backward pass then
dominate).

Both modes train the same student from the same seeds on the same windows, without
augmentation (cached mode refuses augmentation that changes a teacher's input):

- online: the datamodule loads RGB features and flow frames, the teacher runs on every batch;
- cached: `cache-teachers`' `build_cache` runs the teacher once over whole videos (timed apart,
  a one-off cost), then the datamodule loads RGB features only and reads the cache.

Prints seconds per training epoch of each mode (the first epoch apart: it fills the frame store
of the flow source), their ratio, the student's validation frame mAP after the last epoch
for every seed in each mode (the spread over seeds is the noise the modes are compared
against), and how far the whole-video teacher is from the windowed one on the training
windows (relative L2 of embeddings and logits, largest difference of the sigmoid scores).

    .venv/bin/python experiments/benchmarks/distill_epoch.py [--videos 24] [--epochs 5] [--seeds 3]

Torch runs one thread by default: on a CPU shared with other jobs, two OpenMP threads that wait
on each other made small kernels up to 20 times slower, and the timings meaningless.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.cli import LightningCLI

from datamodules.datamodule import MultimodalDataModule
from datamodules.sources import VideoSource
from datamodules.synthetic import SyntheticConfig, generate_benchmark
from lightning_modules.feature_extraction import extract_features
from lightning_modules.models import VideoCNN
from lightning_modules.teachers import Cached, load_frozen_teacher
from lightning_modules.teachers.cache import build_cache, objective_taps, usable_records

WINDOW_SECONDS, WINDOW_STEPS = 6.4, 64
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class EpochTimer(pl.Callback):
    """Wall-clock seconds of every training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def cls(class_path: str, /, **init_args: object) -> dict:
    """A `class_path` entry of a config."""
    return {"class_path": class_path, "init_args": init_args}


def data_config(root: Path, student: str) -> dict:
    """RGB (features, or 32x32 frames) and 64x64 flow frames, no augmentation."""
    if student == "frames":
        rgb = cls("datamodules.sources.VideoSource", size=32, frame_store=True)
    else:
        rgb = cls("datamodules.sources.FeatureSource", path="features/rgb/{video_id}.npy")
    flow = cls("datamodules.sources.FlowSource", size=64, frame_store=True)
    return cls(
        "datamodules.datamodule.MultimodalDataModule",
        root=str(root),
        task="dense",
        modalities={"rgb": rgb, "flow": flow},
        window_seconds=WINDOW_SECONDS,
        window_steps=WINDOW_STEPS,
        augment=None,
        batch_size=8,
        num_workers=0,
    )


def student_config(kind: str, checkpoint: Path, mode: str, cache: Path) -> dict:
    """configs/distill/dense_features_dai21.yaml with the flow teacher only."""
    models = "lightning_modules.models"
    if kind == "frames":
        width = 32
        encoder = cls(
            f"{models}.VideoCNN", modality="rgb", stem_channels=8, widths=[16, 32], depths=[1, 1]
        )
    else:
        width = 128
        encoder = cls(f"{models}.FeatureProjection", in_channels=128, out_channels=width)
        encoder["init_args"]["modality"] = "rgb"
    head = cls(f"{models}.PDAN", in_channels=width, num_classes=8, hidden_channels=width)
    objectives = "lightning_modules.distillation"
    return cls(
        "lightning_modules.distill.DistillModule",
        model=cls(f"{models}.ActionModel", encoder=encoder, head=head),
        task={"class_path": "lightning_modules.tasks.DenseTask"},
        teachers={"flow": str(checkpoint)},
        objectives={
            "atomic": cls(
                f"{objectives}.AtomicContrastive",
                student_channels=width,
                teacher_channels={"flow": 128},
            ),
            "global_relation": {"class_path": f"{objectives}.GlobalRelation"},
            "boundary": {"class_path": f"{objectives}.BoundarySaliency"},
        },
        lr=0.003,
        teacher_source=cls(
            f"lightning_modules.teachers.{mode.capitalize()}",
            **({"folder": str(cache)} if mode == "cached" else {}),
        ),
    )


def build(folder: Path, data: dict, model: dict | None, *args: str) -> LightningCLI:
    """What `crossdistill fit` builds from these configs (written to `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.yaml").write_text(yaml.safe_dump({"data": data}))
    configs = ["--config", str(folder / "data.yaml")]
    if model is not None:
        (folder / "model.yaml").write_text(yaml.safe_dump({"model": model}))
        configs += ["--config", str(folder / "model.yaml")]
    return LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=[
            *configs,
            *args,
            "--trainer.accelerator=cpu",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={folder}",
        ],
        run=False,
        save_config_callback=None,
    )


def train_teacher(root: Path, steps: int, folder: Path) -> Path:
    """The dense flow teacher of configs/teacher/dense_flow.yaml, after `steps` steps."""
    built = build(
        folder / "teacher", data_config(root, "features"), None,
        "--config", str(CONFIGS / "teacher" / "dense_flow.yaml"), "--seed_everything=0",
        f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
    )  # fmt: skip
    built.trainer.fit(built.model, built.datamodule)
    path = folder / "flow_teacher.ckpt"
    built.trainer.save_checkpoint(path)
    return path


def rgb_features(root: Path) -> None:
    """Per-frame RGB features from a fixed random 3D CNN (appearance, no training)."""
    torch.manual_seed(0)
    encoder = VideoCNN(modality="rgb", widths=(32, 64, 128))
    dm = MultimodalDataModule(
        root,
        {"rgb": VideoSource(size=64)},
        window_seconds=WINDOW_SECONDS,
        window_steps=WINDOW_STEPS,
        augment=None,
        num_workers=0,
    )
    extract_features(encoder, dm, root / "features" / "rgb")


def distill(
    mode: str, root: Path, checkpoint: Path, cache: Path, kind: str, epochs: int, seed: int
) -> dict:
    data = data_config(root, kind)
    data["init_args"]["load"] = ["rgb", "flow"] if mode == "online" else ["rgb"]
    built = build(
        cache.parent / f"{mode}{seed}", data, student_config(kind, checkpoint, mode, cache),
        f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
    )  # fmt: skip
    timer = EpochTimer()
    built.trainer.callbacks.append(timer)
    built.trainer.fit(built.model, built.datamodule)
    evaluate = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    scores = evaluate.validate(built.model, built.datamodule, verbose=False)[0]
    return {"epoch_seconds": timer.seconds, "val_frame_mAP": scores["val/frame_mAP"]}


@torch.no_grad()
def teacher_gap(root: Path, checkpoint: Path, cache: Path) -> dict[str, float]:
    """Whole-video (cached) against windowed (online) teacher outputs on training windows."""
    built = build(
        cache.parent / "gap", data_config(root, "features"),
        student_config("features", checkpoint, "online", cache), "--seed_everything=0",
    )  # fmt: skip
    online, dm = built.model, built.datamodule
    dm.setup("fit")
    # the same teachers, read from the cache as well
    taps = objective_taps(getattr(o, "tap", None) for o in online.objectives.values())
    cached = Cached(str(cache)).provider(online.teacher_checkpoints, taps)
    cached.attach(dm)
    sums = {"embeddings": [0.0, 0.0], "logits": [0.0, 0.0]}
    largest = 0.0
    for batch in dm.train_dataloader():
        a = online.teacher_outputs(batch)["flow"]
        b = cached.teacher_outputs(batch)["flow"]
        keep = batch["mask"][:, None]
        for field in sums:
            x, y = getattr(a, field) * keep, getattr(b, field) * keep
            sums[field][0] += float(((x - y) ** 2).sum())
            sums[field][1] += float((x**2).sum())
        gap = (a.logits.sigmoid() - b.logits.sigmoid()).abs() * keep
        largest = max(largest, float(gap.max()))
    gaps = {f"{k}_relative_l2": (d / max(n, 1e-12)) ** 0.5 for k, (d, n) in sums.items()}
    return {**gaps, "largest_score_difference": largest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="an existing synthetic benchmark")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--teacher-steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="student seeds per mode")
    parser.add_argument("--student", choices=["features", "frames"], default="features")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        root = args.root
        if root is None:
            root = work / "synthetic"
            generate_benchmark(root, SyntheticConfig(videos=args.videos, seed=0), workers=2)
        if not (root / "features" / "rgb").is_dir():
            rgb_features(root)
        checkpoint = train_teacher(root, args.teacher_steps, work)

        cache = work / "cache"
        data = data_config(root, "features")
        data["init_args"]["load"] = ["flow"]
        dm = build(work / "build", data, student_config("features", checkpoint, "cached", cache))
        dm = dm.datamodule
        start = time.perf_counter()
        teacher = load_frozen_teacher(checkpoint)
        build_cache(teacher, checkpoint, dm, cache / "flow", usable_records(dm))
        build_seconds = time.perf_counter() - start

        runs: dict[str, list[dict]] = {"online": [], "cached": []}
        for seed in range(args.seeds):
            for mode, found in runs.items():
                found.append(
                    distill(mode, root, checkpoint, cache, args.student, args.epochs, seed)
                )
        gap = teacher_gap(root, checkpoint, cache)

    summary: dict[str, object] = {
        "student": args.student,
        "videos": args.videos,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "cache_build_seconds": round(build_seconds, 2),
    }
    steady: dict[str, float] = {}
    for mode, found in runs.items():
        seconds = [s for run in found for s in run["epoch_seconds"][1:] or run["epoch_seconds"]]
        first = [run["epoch_seconds"][0] for run in found]
        scores = np.array([run["val_frame_mAP"] for run in found])
        steady[mode] = float(np.mean(seconds))
        summary[f"{mode}_epoch_seconds"] = round(steady[mode], 3)
        summary[f"{mode}_first_epoch_seconds"] = round(float(np.mean(first)), 3)
        summary[f"{mode}_val_frame_mAP"] = [round(float(x), 4) for x in scores]
        summary[f"{mode}_val_frame_mAP_mean_std"] = [
            round(float(scores.mean()), 4),
            round(float(scores.std(ddof=1)) if len(scores) > 1 else 0.0, 4),
        ]
    summary["epoch_ratio"] = round(steady["online"] / steady["cached"], 2)
    summary.update({f"teacher_{k}": round(v, 4) for k, v in gap.items()})
    print(json.dumps(summary, indent=1))
    online_map, cached_map = (summary[f"{m}_val_frame_mAP_mean_std"] for m in runs)
    print(
        f"one distillation epoch: online {steady['online']:.2f} s, cached "
        f"{steady['cached']:.2f} s ({summary['epoch_ratio']}x); student val frame mAP over "
        f"{args.seeds} seeds: online {online_map[0]:.4f} +- {online_map[1]:.4f}, cached "
        f"{cached_map[0]:.4f} +- {cached_map[1]:.4f}"
    )


if __name__ == "__main__":
    main()
