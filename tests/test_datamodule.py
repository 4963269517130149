"""MultimodalDataModule on a tiny synthetic benchmark: configs, the batch contract, workers,
DDP-exact evaluation, and bad input reported from the main process with the file named."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.seed import isolate_rng

import datamodules.datamodule as datamodule_module
from datamodules.annotations import Segment, VideoRecord
from datamodules.datamodule import MultimodalDataModule
from datamodules.dataset import Collate, UntrimmedDataset
from datamodules.grid import TimeGrid, video_steps
from datamodules.sampling import ClipWindows, Window
from datamodules.sources import (
    DataError,
    FeatureSource,
    FlowSource,
    KeypointSource,
    VideoSource,
)
from datamodules.tasks import CLIPS
from datamodules.transforms import Augment, JointTransform
from lightning_modules.commands.data_check import build_parser
from tests.conftest import REPO_ROOT
from tests.data_helpers import copy_benchmark, with_random_features

CONFIGS = REPO_ROOT / "configs" / "data"
# every data config, with the files it is composed after
CONFIG_STACKS = {
    "synthetic.yaml": ["synthetic.yaml"],
    "synthetic_segments.yaml": ["synthetic.yaml", "synthetic_segments.yaml"],
    "synthetic_clips.yaml": ["synthetic_clips.yaml"],
    "synthetic_features.yaml": ["synthetic_features.yaml"],
    "synthetic_features_segments.yaml": [
        "synthetic_features.yaml",
        "synthetic_features_segments.yaml",
    ],
}


def from_config(files: list[str], root: Path, *overrides: str) -> MultimodalDataModule:
    """The datamodule as `crossdistill fit --config ...` would build it."""
    args = [a for name in files for a in ("--config", str(CONFIGS / name))]
    parser = build_parser()
    config = parser.parse_args([*args, f"--data.init_args.root={root}", *overrides])
    return parser.instantiate(config).data


def make(root: Path, **kwargs) -> MultimodalDataModule:
    options = {
        "modalities": {"rgb": VideoSource(size=32), "pose": KeypointSource()},
        "window_seconds": 3.2,
        "window_steps": 32,
        "batch_size": 2,
        "num_workers": 0,
    }
    return MultimodalDataModule(root, **{**options, **kwargs})


def test_every_data_config_is_tested() -> None:
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(CONFIG_STACKS)


@pytest.fixture(scope="module")
def feature_bench(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_random_features(bench, tmp_path_factory.mktemp("features") / "bench")


@pytest.mark.parametrize("name", sorted(CONFIG_STACKS))
def test_data_configs_give_the_batch_contract(bench: Path, feature_bench: Path, name: str) -> None:
    root = feature_bench if "features" in name else bench
    dm = from_config(CONFIG_STACKS[name], root, "--data.init_args.num_workers=0")
    dm.setup("fit")
    assert dm.num_classes == 8 and len(dm.class_names) == 8
    train = dm.train_dataloader()
    for loader in (train, dm.val_dataloader()):
        batch = next(iter(loader))
        meta = batch["meta"]
        size = len(meta["video_id"])  # B samples; inputs and mask have B * views rows
        rows = size * (dm.test_views if dm.task == "clips" and loader is not train else 1)
        assert batch["mask"].dtype == torch.bool
        assert batch["mask"].shape == (rows, dm.window_steps)
        for key, shape in dm.input_shapes.items():
            assert tuple(batch["inputs"][key].shape) == (rows, *shape), key
        assert meta["window_index"].shape == (size,) and meta["window_index"].dtype == torch.long
        for key in ("t0", "t1", "stride", "duration"):
            assert meta[key].shape == (size,) and meta[key].is_floating_point()
        targets = batch["targets"]
        if dm.task == "dense":
            assert targets["frames"].shape == (size, dm.window_steps, 8)
        elif dm.task == "segments":
            assert len(targets["segments"]) == size
            assert all(s.ndim == 2 and s.shape[1] == 3 for s in targets["segments"])
        else:
            assert targets["clip"].shape == (size,) and targets["clip"].dtype == torch.long
    assert set(batch["inputs"]) >= set(dm.modalities)
    if "boxes" in dm.modalities:
        assert batch["inputs"]["boxes_mask"].dtype == torch.bool


def test_targets_follow_the_annotations(bench: Path) -> None:
    dm = make(bench, augment=None)
    dm.setup("validate")
    dataset = dm.datasets["val"]
    for index in range(len(dataset)):
        sample = dataset[index]
        record = dm.annotation_set.records[sample.meta["video_id"]]
        times = sample.meta["t0"] + (np.arange(32) + 0.5) * sample.meta["stride"]
        for k, label in enumerate(dm.class_names):
            active = np.zeros(32, dtype=bool)
            for s in record.segments:
                if s.label == label:
                    active |= (times >= s.start) & (times < s.end)
            active &= sample.mask[0].numpy()
            np.testing.assert_array_equal(sample.targets["frames"][:, k].numpy(), active)
    segments = make(bench, task="segments", augment=None)
    segments.setup("validate")
    sample = segments.datasets["val"][0]
    record = segments.annotation_set.records[sample.meta["video_id"]]
    inside = [s for s in record.segments if s.end > 0.0 and s.start < 3.2]
    assert len(sample.targets["segments"]) == len(inside)
    first = sample.targets["segments"][0].tolist()
    assert first[:2] == pytest.approx([inside[0].start, min(inside[0].end, 3.2)])
    assert dm.class_names[int(first[2])] == inside[0].label


def test_flipped_training_samples_swap_mirrored_labels(bench: Path) -> None:
    """A horizontal flip mirrors the video, so walk_left and walk_right trade targets (the pairs
    come from the synthetic manifest); other classes keep theirs, and flow x changes sign."""
    flip_only = Augment(min_scale=1.0, flip=True, colour_jitter=0.0)
    flow = {"flow": FlowSource(size=32)}
    dm = make(bench, augment=flip_only, modalities=flow, centre_on_action=1.0)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    left, right = dm.class_names.index("walk_left"), dm.class_names.index("walk_right")
    order = list(range(len(dm.class_names)))
    order[left], order[right] = right, left
    seen = {True: 0, False: 0}
    torch.manual_seed(0)
    for index in list(range(len(dataset))) * 10:
        sample = dataset[index]
        record = dm.annotation_set.records[sample.meta["video_id"]]
        window = Window(record, TimeGrid(sample.meta["t0"], sample.meta["t1"], 32), 0)
        plain = dataset.sources["flow"].load(record, window.grid)["flow"]
        flipped = torch.allclose(sample.inputs["flow"][0, 0], -plain[0].flip(-1), atol=1e-5)
        assert flipped != torch.allclose(sample.inputs["flow"][0, 0], plain[0], atol=1e-5)
        expected = dataset.targets(window, sample.mask[0])["frames"]
        expected = expected[:, order] if flipped else expected
        torch.testing.assert_close(sample.targets["frames"], expected)
        walking = bool(expected[:, [left, right]].any())
        seen[flipped] += walking
    assert seen[True] and seen[False], "need flipped and plain windows with walking in them"
    with pytest.raises(DataError, match="not a class of the dataset"):
        make(bench, augment=Augment(mirror_pairs=(("walk_left", "moonwalk"),))).setup("fit")


def test_two_workers_load_batches(bench: Path) -> None:
    dm = make(bench, num_workers=2)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sum(len(b["meta"]["video_id"]) for b in batches) == len(dm.datasets["train"])
    assert all(torch.isfinite(b["inputs"]["rgb"]).all() for b in batches)


def test_workers_forked_after_opencv_ran_threads_do_not_hang(bench: Path) -> None:
    """OpenCV's thread pool, started in the main process by a threaded resize, does not survive
    the fork: a worker that set its own thread count then waited forever (seen as a suite that
    stopped in `_init_worker`)."""
    script = f"""
import cv2, numpy as np
from tests.test_datamodule import make
cv2.setNumThreads(2)
image = np.random.rand(1500, 1500, 3).astype(np.float32)
for _ in range(3):
    cv2.resize(image, (1000, 1000))
dm = make({str(bench)!r}, num_workers=2)
dm.setup("fit")
print(len(next(iter(dm.train_dataloader()))["meta"]["video_id"]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert done.returncode == 0 and done.stdout.split()[-1] == "2", done.stderr[-2000:]


def test_workers_forked_after_a_main_process_pass_do_not_hang(bench: Path) -> None:
    """decord readers cached by a `num_workers: 0` pass are inherited by workers forked later;
    closing one there blocked the worker for good (its decoding thread is not forked)."""
    dm = make(bench, modalities={"rgb": VideoSource(size=32)})  # decord readers, no store
    dm.setup("fit")
    assert list(dm.train_dataloader())
    dm.num_workers = 2
    loader = dm.train_dataloader()
    loader.timeout = 20  # a hung worker fails the test instead of hanging it
    batches = list(loader)
    assert sum(len(b["meta"]["video_id"]) for b in batches) == len(dm.datasets["train"])


def _windows(batches: list[dict]) -> list[tuple]:
    """What a pass drew: each sample's video, window start and first flow values."""
    return [
        (video_id, float(t0), tuple(flow[0, 0, 0, :4].tolist()))
        for batch in batches
        for video_id, t0, flow in zip(
            batch["meta"]["video_id"], batch["meta"]["t0"], batch["inputs"]["flow"], strict=True
        )
    ]


def test_training_samples_depend_on_seed_epoch_and_index_only(bench: Path) -> None:
    """The same windows and augmentations in the main process and in workers, other ones in
    another epoch; a loader resumed from a state taken after k batches yields the rest."""
    passes = {}
    for workers in (0, 2):
        dm = make(bench, modalities={"flow": FlowSource(size=32)}, num_workers=workers)
        dm.setup("fit")
        loader = dm.train_dataloader()
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            passes[workers, epoch] = _windows(list(loader))
    assert passes[0, 0] == passes[2, 0] and passes[0, 1] == passes[2, 1]
    assert passes[0, 0] != passes[0, 1]
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    batches = iter(loader)
    taken = [next(batches) for _ in range(3)]
    state = loader.state_dict()
    assert state == {"epoch": 1, "taken": 3 * dm.batch_size}
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    assert _windows(taken) + _windows(list(resumed)) == passes[0, 1]
    assert _windows(list(resumed)) == passes[0, 1]  # the skip is for one pass only


def test_workers_of_different_ranks_draw_different_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our `worker_init_fn` replaces Lightning's; it must still mix the rank into the seeds."""
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    draws = []
    with isolate_rng():
        for rank in (0, 1):
            torch.manual_seed(7)  # the same process seed, as worker 0 of every rank gets
            datamodule_module._init_worker(0, rank=rank)
            draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1])


def test_evaluation_on_two_ranks_scores_every_step_once(
    bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = make(bench, batch_size=3)
    dm.setup("test")
    scored: list[tuple[str, int]] = []
    for rank in (0, 1):
        monkeypatch.setattr(datamodule_module, "_world", lambda trainer, rank=rank: (2, rank))
        for batch in dm.test_dataloader():
            for row, video_id in enumerate(batch["meta"]["video_id"]):
                t0, stride = float(batch["meta"]["t0"][row]), float(batch["meta"]["stride"][row])
                for step in np.flatnonzero(batch["mask"][row].numpy()):
                    scored.append((video_id, round(t0 / stride) + int(step)))
    expected = [
        (r.video_id, step)
        for r in dm.subset_records("test")
        for step in range(video_steps(r.duration, 0.1))
    ]
    assert sorted(scored) == sorted(expected)


def _broken(bench: Path, tmp_path: Path) -> Path:
    return copy_benchmark(bench, tmp_path / "broken")


def _training_ids(root: Path) -> list[str]:
    database = json.loads((root / "annotations" / "activitynet.json").read_text())["database"]
    return sorted(v for v, entry in database.items() if entry["subset"] == "training")


def test_truncated_mp4_is_named_at_setup(bench: Path, tmp_path: Path) -> None:
    root = _broken(bench, tmp_path)
    path = root / "videos" / f"{_training_ids(root)[0]}.mp4"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=str(path)) as caught:
        make(root).setup("fit")
    assert "Fix:" in str(caught.value)


def test_missing_modality_file_is_named_at_setup(bench: Path, tmp_path: Path) -> None:
    root = _broken(bench, tmp_path)
    path = root / "pose" / f"{_training_ids(root)[1]}.npy"
    path.unlink()
    with pytest.raises(DataError, match=f"{path}: file not found"):
        make(root).setup("fit")


def test_annotated_video_without_files_is_named_at_setup(bench: Path, tmp_path: Path) -> None:
    root = _broken(bench, tmp_path)
    annotations = root / "annotations" / "activitynet.json"
    data = json.loads(annotations.read_text())
    data["database"]["ghost"] = {"subset": "training", "duration": 9.0, "annotations": []}
    annotations.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"ghost\.mp4: file not found") as caught:
        make(root).setup("fit")
    assert "ghost.npy" in str(caught.value)


def test_keypoints_of_the_wrong_shape_are_named_at_setup(bench: Path, tmp_path: Path) -> None:
    root = _broken(bench, tmp_path)
    path = root / "pose" / f"{_training_ids(root)[0]}.npy"
    np.save(path, np.load(path)[:, :, :2])
    with pytest.raises(DataError, match=f"{path}: has shape"):
        make(root).setup("fit")


def _with_features(bench: Path, tmp_path: Path) -> Path:
    root = _broken(bench, tmp_path)
    (root / "features").mkdir()
    for path in (root / "pose").glob("*.npy"):
        frames = np.load(path).shape[0]
        np.save(root / "features" / path.name, np.ones((frames, 4), dtype=np.float32))
    return root


def test_features_with_nan_are_named_at_setup(bench: Path, tmp_path: Path) -> None:
    root = _with_features(bench, tmp_path)
    path = root / "features" / f"{_training_ids(root)[0]}.npy"
    array = np.load(path)
    array[5, 2] = np.inf
    np.save(path, array)
    dm = make(root, modalities={"i3d": FeatureSource("features/{video_id}.npy")})
    with pytest.raises(DataError, match=f"{path}: holds 1 NaN/Inf"):
        dm.setup("fit")


def test_features_shorter_than_the_duration_are_named_at_setup(bench: Path, tmp_path: Path) -> None:
    root = _with_features(bench, tmp_path)
    path = root / "features" / f"{_training_ids(root)[0]}.npy"
    np.save(path, np.load(path)[:-20])
    dm = make(root, modalities={"i3d": FeatureSource("features/{video_id}.npy")})
    with pytest.raises(DataError, match=f"{path}: has .* features but the annotated duration"):
        dm.setup("fit")
    resampled = make(
        root, modalities={"i3d": FeatureSource("features/{video_id}.npy", resample=True)}
    )
    resampled.setup("fit")
    assert resampled.datasets["train"][0].inputs["i3d"].shape == (1, 4, 32)  # one view


def test_missing_skip_counts_and_logs(
    bench: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _broken(bench, tmp_path)
    ids = _training_ids(root)
    (root / "pose" / f"{ids[0]}.npy").unlink()
    with caplog.at_level(logging.WARNING, logger="datamodules.datamodule"):
        dm = make(root, missing="skip")
        dm.setup("fit")
    assert dm.skipped["training"] == [ids[0]]
    assert "left out 1 of" in caplog.text and ids[0] in caplog.text
    assert ids[0] not in {r.video_id for r in dm.datasets["train"].sampler.records}


def test_worker_errors_name_the_file(bench: Path, tmp_path: Path) -> None:
    root = _broken(bench, tmp_path)
    dm = make(root, num_workers=2)
    dm.setup("fit")
    for path in (root / "videos").glob("*.mp4"):  # broken after the up-front check
        path.write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"videos/syn_\d+\.mp4: cannot load modality 'rgb'"):
        next(iter(dm.train_dataloader()))


def test_misspelt_subset_is_an_error_that_lists_the_subsets(bench: Path) -> None:
    with pytest.raises(DataError, match=r"validaton.*training"):
        make(bench, val_subset="validaton").setup("fit")


class _Recorder(pl.LightningModule):
    """Records what a Trainer feeds it; no training."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def validation_step(self, batch: dict, batch_index: int) -> None:
        meta = batch["meta"]
        for video_id, window in zip(meta["video_id"], meta["window_index"], strict=True):
            self.seen.append((video_id, int(window)))


def test_lightning_trainer_validates_every_window_once(bench: Path) -> None:
    dm = make(bench, batch_size=2)
    model = _Recorder()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.validate(model, datamodule=dm, verbose=False)
    sampler = dm.datasets["val"].sampler
    windows = [w for i in range(len(sampler)) for w in sampler.windows(i)]
    assert sorted(model.seen) == sorted((w.record.video_id, w.index) for w in windows)


def test_verb_noun_clips_batch_both_heads(tmp_path: Path) -> None:
    """EPIC-KITCHENS-style clips: a segment's verb and noun index their own vocabularies."""
    np.save(tmp_path / "P01.npy", np.arange(60, dtype=np.float32)[:, None].repeat(2, 1))
    segments = (
        Segment("take cup", 1.0, 2.0, verb="take", noun="cup"),
        Segment("wash pan", 3.0, 5.0, verb="wash", noun="pan"),
    )
    record = VideoRecord("P01", "validation", 6.0, segments, fps=10.0)
    source = FeatureSource("{video_id}.npy")
    source.bind("features", tmp_path, None)
    dataset = UntrimmedDataset(
        ClipWindows([record], frames=4, views=2),
        {"features": source},
        CLIPS,
        ["take cup", "wash pan"],
        JointTransform({"features": source}, None),
        verb_classes=["wash", "take"],
        noun_classes=["pan", "cup", "knife"],
    )
    batch = Collate({"features": source}, CLIPS)([dataset[i] for i in range(len(dataset))])
    assert batch["targets"]["clip"]["verb"].tolist() == [1, 0]
    assert batch["targets"]["clip"]["noun"].tolist() == [1, 0]
    assert batch["meta"]["window_index"].tolist() == [0, 1]  # the clip within its video
    # the two views of each clip are contiguous rows: clip 0 at 1.0-2.0 s, clip 1 at 3.0-5.0 s
    features = batch["inputs"]["features"]
    assert features.shape == (4, 2, 4) and batch["mask"].shape == (4, 4)
    np.testing.assert_allclose(features[:, 0, 0].numpy(), [10, 11, 31, 33])


def test_eval_whole_videos_scores_each_video_as_one_window(bench: Path) -> None:
    """Tiles of 3.2 s cut the 8-12 s videos (and instances crossing a border); whole-video
    windows are a multiple of the window that holds the longest video, one per video."""
    tiled = make(bench, modalities={"pose": KeypointSource()}, task="segments")
    tiled.setup("validate")
    whole = make(
        bench, modalities={"pose": KeypointSource()}, task="segments", eval_whole_videos=True
    )
    whole.setup("validate")
    videos = whole.reports["val"].usable
    assert len(whole.datasets["val"]) == len(videos) < len(tiled.datasets["val"])
    for index, record in enumerate(videos):
        sample = whole.datasets["val"][index]
        steps = sample.mask.shape[-1]
        assert steps % 32 == 0 and sample.meta["t0"] == 0.0
        assert int(sample.mask.sum()) == round(record.duration / 0.1)  # every step of it
        assert len(sample.targets["segments"]) == len(record.segments)  # none cut


@pytest.mark.parametrize("missing", ["skip", "error"])
def test_a_file_broken_after_the_check_is_skipped_in_training_under_missing_skip(
    bench: Path, tmp_path: Path, missing: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Damage the pre-flight check did not see fails in a DataLoader worker; under `missing:
    skip` the training window is replaced by the next one, with a warning (evaluation never
    skips: every step must be scored)."""
    from datamodules.sampling import Draw
    from tests.data_helpers import copy_benchmark

    root = copy_benchmark(bench, tmp_path / "bench")
    dm = make(root, modalities={"pose": KeypointSource()}, missing=missing)
    dm.setup("fit")
    train = dm.datasets["train"]
    broken = train.sampler.records[train.sampler.slots[0]].video_id
    (root / "pose" / f"{broken}.npy").write_bytes(b"broken")
    if missing == "error":
        with pytest.raises(DataError, match=broken):
            train[Draw(0, 0, 0)]
        return
    sample = train[Draw(0, 0, 0)]
    assert sample.meta["video_id"] != broken
    assert "training on the next window instead" in caplog.text
    record = next(r for r in dm.reports["train"].usable if r.video_id == broken)
    evaluation = dm.dataset("val", [record])
    assert evaluation.skip_broken
    with pytest.raises(DataError, match=broken):
        evaluation[0]


def test_a_process_exits_with_a_failed_loaders_workers_still_alive(
    bench: Path, tmp_path: Path
) -> None:
    """Workers ignore SIGTERM (preemption reaches the whole process group); a loader whose
    iterator outlives a worker's error left them to the interpreter's exit, which signals them
    SIGTERM and then waited forever. The process now ends (a hang fails through the timeout)."""
    import subprocess
    import sys
    import textwrap

    root = _broken(bench, tmp_path)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from datamodules.sources.base import DataError
        from tests.test_datamodule import make
        dm = make(Path({str(root)!r}), num_workers=2)
        dm.setup("fit")
        for path in Path({str(root)!r}, "videos").glob("*.mp4"):
            path.write_bytes(b"not a video")
        iterator = iter(dm.train_dataloader())  # alive until the interpreter exits
        try:
            next(iterator)
        except DataError:
            print("named the file")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0 and "named the file" in done.stdout, done.stderr[-2000:]
