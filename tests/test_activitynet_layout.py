"""ActivityNet-1.3's feature layout: every video resampled to 192 steps spanning it, so a step
lasts `duration / 192` seconds, and segments come back in seconds on the video's timeline.

A fake folder in the real layout (v1.3 JSON, `v_<id>.npy` two-stream features of any length)
holds videos from 30 s to 200 s; the configs are `configs/data/real/activitynet_i3d.yaml` and
`configs/teacher/real/activitynet_i3d_{rgb,flow}.yaml`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from pytorch_lightning.cli import LightningCLI

from datamodules.annotations import read_activitynet
from datamodules.datamodule import MultimodalDataModule
from datamodules.dataset import Collate, Sample
from datamodules.sampling import VideoWindows
from datamodules.sources import DataError, FeatureSource
from lightning_modules.commands.data_check import build_parser
from lightning_modules.metrics.segment_map import ACTIVITYNET_TIOUS
from lightning_modules.tasks.base import sample_ids
from lightning_modules.teachers.cache import TeacherCacheError, build_cache
from tests.cli_helpers import build_cli
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
DATA = CONFIGS / "data" / "real" / "activitynet_i3d.yaml"
TEACHERS = {m: CONFIGS / "teacher" / "real" / f"activitynet_i3d_{m}.yaml" for m in ("rgb", "flow")}
STEPS = 192
# id: subset, duration (s), feature rows (fewer and more than 192), segments (label, start, end)
VIDEOS = {
    "short30": ("training", 30.0, 56, [("Long jump", 3.2, 17.9)]),
    "long200": (
        "training",
        200.0,
        375,
        [("Making a sandwich", 12.5, 161.0), ("Long jump", 170.0, 199.0)],
    ),
    # ends past the duration, as 288 segments of v1.3 do
    "mid75": ("training", 75.5, 141, [("Drinking beer", 0.01, 80.2)]),
    "val30": ("validation", 30.0, 20, [("Drinking beer", 5.0, 25.0)]),
    "val200": (
        "validation",
        200.0,
        400,
        [("Long jump", 40.0, 52.5), ("Making a sandwich", 100.0, 190.0)],
    ),
}
CLASSES = 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake ActivityNet folder the data config's comment describes."""
    folder = tmp_path_factory.mktemp("activitynet")
    rng = np.random.default_rng(0)
    database = {}
    for video_id, (subset, duration, rows, segments) in VIDEOS.items():
        annotations = [{"segment": [s, e], "label": label} for label, s, e in segments]
        database[video_id] = {"subset": subset, "duration": duration, "annotations": annotations}
        (folder / "i3d_features").mkdir(exist_ok=True)
        features = rng.standard_normal((rows, 2048)).astype(np.float32)
        np.save(folder / "i3d_features" / f"v_{video_id}.npy", features)
    (folder / "annotations").mkdir()
    layout = {"version": "VERSION 1.3", "taxonomy": [], "database": database}
    (folder / "annotations" / "activity_net.v1-3.json").write_text(json.dumps(layout))
    return folder


def datamodule(root: Path, *flags: str) -> MultimodalDataModule:
    parser = build_parser()
    base = ["--config", str(DATA), f"--data.init_args.root={root}"]
    config = parser.parse_args([*base, "--data.init_args.num_workers=0", *flags])
    return parser.instantiate(config).data


def cli(root: Path, runs: Path, modality: str = "rgb") -> LightningCLI:
    """What `crossdistill fit` builds from the data and teacher configs on the fake folder."""
    configs = [str(path) for path in (DATA, CONFIGS / "trainer" / "cpu.yaml", TEACHERS[modality])]
    args = [
        *(flag for path in configs for flag in ("--config", path)),
        f"--data.init_args.root={root}",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
        f"--model.init_args.model.init_args.head.init_args.num_classes={CLASSES}",
        "--trainer.fast_dev_run=1",
        f"--trainer.default_root_dir={runs}",
        f"--model.init_args.predictions_dir={runs / 'predictions'}",
    ]
    return build_cli(args)


def sample_of(dm: MultimodalDataModule, role: str, video_id: str) -> Sample:
    dataset = dm.datasets[role]
    ids = [record.video_id for record in dataset.sampler.records]  # type: ignore[attr-defined]
    return dataset[ids.index(video_id)]


@pytest.mark.parametrize("modality", sorted(TEACHERS))
def test_configs_train_and_score_at_activitynet_tious(
    root: Path, tmp_path: Path, modality: str
) -> None:
    built = cli(root, tmp_path, modality)
    assert built.datamodule.modalities.keys() == {modality}
    assert built.model.task.tious == ACTIVITYNET_TIOUS
    built.trainer.fit(built.model, built.datamodule)
    scores = built.trainer.test(built.model, built.datamodule)[0]
    expected = {f"test/mAP@{t:g}" for t in ACTIVITYNET_TIOUS} | {"test/average_mAP"}
    assert expected <= set(scores)
    assert all(np.isfinite(scores[key]) for key in expected)
    written = json.loads((tmp_path / "predictions" / "segments.json").read_text())["results"]
    assert set(written) == {"val30", "val200"}
    for video_id, found in written.items():  # seconds on the whole video's timeline
        ends = np.array([row["segment"] for row in found])
        assert len(ends) and ends.min() >= 0.0 and ends.max() <= VIDEOS[video_id][1] + 1e-3


def test_every_video_is_192_steps_of_linearly_resampled_features(root: Path) -> None:
    dm = datamodule(root)
    dm.setup("fit")
    # one window a video; validation is one of the three training videos (val_fraction)
    assert len(dm.datasets["train"]) == 2 and len(dm.datasets["val"]) == 1
    dm.include_held_out_in_training()  # no held-out part: nothing changes
    trained = {r.video_id for r in dm.datasets["train"].sampler.records}
    dm = datamodule(
        root, "--data.init_args.val_fraction=0", "--data.init_args.val_subset=validation"
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["val"]) == 2
    assert trained < {r.video_id for r in dm.datasets["train"].sampler.records}
    for video_id in ("short30", "long200"):
        _, duration, rows, _ = VIDEOS[video_id]
        sample = sample_of(dm, "train", video_id)
        assert sample.inputs["rgb"].shape == (1, 1024, STEPS)
        assert bool(sample.mask.all())
        assert (sample.meta["t0"], sample.meta["t1"]) == (0.0, duration)
        assert sample.meta["stride"] == pytest.approx(duration / STEPS)
        # ActionFormer resizes each file with linear interpolation (half-pixel centres)
        features = np.load(root / "i3d_features" / f"v_{video_id}.npy")[:, :1024]
        assert features.shape[0] == rows != STEPS
        expected = F.interpolate(
            torch.from_numpy(features).T[None], size=STEPS, mode="linear", align_corners=False
        )[0]
        torch.testing.assert_close(sample.inputs["rgb"][0], expected, atol=1e-4, rtol=1e-4)


def test_ground_truth_round_trips_through_the_grid_and_the_decoding(root: Path) -> None:
    """Targets assigned on each video's grid and decoded back land within one step of the
    annotation, in seconds from the video's start, and score mAP 1 at every ActivityNet tIoU."""
    dm = datamodule(
        root, "--data.init_args.val_fraction=0", "--data.init_args.val_subset=validation"
    )
    dm.setup("fit")
    samples = [sample_of(dm, "train", video_id) for video_id in ("short30", "long200", "mid75")]
    batch = Collate(dm.modalities, dm.task_data)(samples)
    module = cli(root, root / "unused").model
    task = module.task
    with torch.no_grad():
        output = module.model(batch["inputs"], batch["mask"])
    classes, distances, _ = task.assign(output, batch)
    output.logits = torch.where(classes > 0, 10.0, -10.0).transpose(1, 2)
    output.extras["offsets"] = distances.transpose(1, 2)
    predictions = task.predict(output, batch)
    for sample, predicted in zip(samples, predictions, strict=True):
        video_id = sample.meta["video_id"]
        _, duration, _, segments = VIDEOS[video_id]
        step = duration / STEPS
        assert float(predicted["segments"].max()) <= duration + 1e-3
        for label, start, end in segments:
            truth = torch.tensor([start, min(end, duration)])
            found = predicted["segments"][predicted["labels"] == dm.class_names.index(label)]
            error = (found - truth).abs().max(dim=1).values
            assert float(error.min()) <= step, (video_id, label, found, truth)
    metric = task.metrics(CLASSES)["segments"]
    metric.update(predictions, task.targets(batch), sample_ids(batch))
    scores = metric.compute()
    assert set(scores) == {f"mAP@{t:g}" for t in ACTIVITYNET_TIOUS} | {"average_mAP"}
    assert float(scores["average_mAP"]) == pytest.approx(1.0)


def test_real_activitynet_durations_each_give_192_valid_steps(realdata: Path) -> None:
    """From 1.6 s to 975 s: every v1.3 video is one window of 192 steps inside it, and the
    teacher config classifies the file's 200 labels."""
    annotations = read_activitynet(realdata / "activitynet" / "activity_net.v1-3.json")
    for path in TEACHERS.values():
        teacher = yaml.safe_load(path.read_text())["model"]["init_args"]["model"]["init_args"]
        assert teacher["head"]["init_args"]["num_classes"] == len(annotations.classes) == 200
    records = list(annotations.records.values())
    windows = VideoWindows(records, STEPS)
    for index, record in enumerate(records):
        (window,) = windows.windows(index)
        assert window.grid.steps == STEPS and (window.grid.t0, window.grid.t1) == (
            0.0,
            record.duration,
        )
        assert window.grid.valid(record.duration).all(), record.video_id


def test_per_video_windows_refuse_what_needs_one_stride(root: Path, tmp_path: Path) -> None:
    source = FeatureSource("i3d_features/v_{video_id}.npy", resample=True)
    with pytest.raises(DataError, match="centre_on_action"):
        MultimodalDataModule(
            root,
            {"rgb": source},
            task="segments",
            annotations="annotations/activity_net.v1-3.json",
            annotation_format="activitynet",
            centre_on_action=0.5,
        )
    with pytest.raises(TeacherCacheError, match="window_seconds: null"):
        build_cache(torch.nn.Identity(), tmp_path / "teacher.ckpt", datamodule(root), tmp_path, [])
