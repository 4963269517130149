"""The teacher cache: cached outputs equal the online teacher's on the same windows, a cached
distillation step has the online step's loss terms, stale / truncated / interrupted caches stop
the run before training with the rebuild command, and `cache-teachers` then a cached `fit` run
end to end from configs/smoke/distill_cached.yaml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lightning_modules.teachers.cache as teacher_cache
from datamodules.sources.base import DataError
from datamodules.sources.integrity import write_atomic
from lightning_modules.commands.cache_teachers import main
from lightning_modules.distill import DistillModule
from lightning_modules.teachers import Cached, Online, TeacherProvider, load_frozen_teacher
from lightning_modules.teachers.cache import (
    TeacherCacheError,
    build_cache,
    cache_modality,
    open_cache,
    rebuild_command,
    usable_records,
)
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark
from tests.test_teacher import cli

SMOKE = REPO_ROOT / "configs" / "smoke"
# every tiny video (8-12 s) fits one window: the whole-video teacher is then the windowed one
WHOLE = ["--data.init_args.window_seconds=12.8", "--data.init_args.window_steps=128"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_benchmark(tmp_path_factory)


@pytest.fixture(scope="module")
def checkpoint(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke flow teacher (VideoCNN + PDAN) after one step."""
    runs = tmp_path_factory.mktemp("cache_teacher")
    teacher = cli([
        "--config", str(SMOKE / "teacher.yaml"), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={runs}",
        "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
    ])  # fmt: skip
    teacher.trainer.fit(teacher.model, teacher.datamodule)
    path = runs / "flow.ckpt"
    teacher.trainer.save_checkpoint(path)
    return path


def distill_args(
    bench: Path, tmp: Path, checkpoint: Path, *extra: str, configs: tuple[str, ...] = ()
) -> list[str]:
    return [
        "--config", str(SMOKE / "distill.yaml"), *configs, f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={tmp / 'runs'}",
        f"--model.init_args.teachers.flow={checkpoint}", *extra,
    ]  # fmt: skip


def cached_args(bench: Path, tmp: Path, checkpoint: Path, *extra: str) -> list[str]:
    cached = ("--config", str(SMOKE / "distill_cached.yaml"))
    folder = f"--model.init_args.teacher_source.init_args.folder={tmp / 'cache'}"
    return distill_args(bench, tmp, checkpoint, folder, *extra, configs=cached)


def build_flow_cache(datamodule, checkpoint: Path, folder: Path, taps=()) -> dict:
    teacher = load_frozen_teacher(checkpoint)
    return build_cache(teacher, checkpoint, datamodule, folder, usable_records(datamodule), taps)


def assert_equal_on_valid_steps(expected, got, mask: torch.Tensor) -> None:
    """Embeddings, logits and the `head` tap equal wherever the window has video."""
    keep = mask[:, None]
    for name, a, b in [
        ("embeddings", expected.embeddings, got.embeddings),
        ("logits", expected.logits, got.logits),
        ("head", expected.taps["head"], got.taps["head"]),
    ]:
        torch.testing.assert_close(b * keep, a * keep, rtol=1e-4, atol=1e-5, msg=name)


def online_and_cached(bench: Path, tmp: Path, checkpoint: Path):
    """An online DistillModule whose data loads flow, and the same run cached: the batch holds
    flow and the cache, so both modes see the same windows."""
    online = cli(distill_args(bench, tmp, checkpoint, *WHOLE, "--data.init_args.augment=null"))
    build_flow_cache(online.datamodule, checkpoint, tmp / "cache" / "flow", taps=["head"])
    online.datamodule.setup("fit")
    cached = DistillModule(
        online.model.model, online.model.task, {"flow": str(checkpoint)},
        dict(online.model.objectives), teacher_source=Cached(str(tmp / "cache")),
    )  # fmt: skip
    cached.teacher_provider.attach(online.datamodule)
    return online, cached


def test_cached_outputs_equal_online_outputs_on_the_same_windows(
    bench: Path, checkpoint: Path, tmp_path: Path
) -> None:
    online, cached = online_and_cached(bench, tmp_path, checkpoint)
    assert cached.teachers == {} and cache_modality("flow") in online.datamodule.attached
    torch.manual_seed(0)
    batch = next(iter(online.datamodule.train_dataloader()))
    assert batch["inputs"][cache_modality("flow")].shape[1:] == (32 + 8 + 32, 128)
    expected = online.model.teacher_outputs(batch)["flow"]
    got = cached.teacher_outputs(batch)["flow"]
    assert_equal_on_valid_steps(expected, got, batch["mask"])


def test_online_and_cached_providers_answer_alike_through_one_interface(
    bench: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """The two teacher sources, made from their config objects, serve the same batch through
    `teacher_outputs` alone: the same teachers, the same fields, the same values."""
    online, _ = online_and_cached(bench, tmp_path, checkpoint)
    checkpoints = {"flow": str(checkpoint)}
    providers = {
        "online": Online().provider(checkpoints, ["head"]),
        "cached": Cached(str(tmp_path / "cache")).provider(checkpoints, ["head"]),
    }
    assert isinstance(providers["online"], TeacherProvider) and providers["online"].models
    assert isinstance(providers["cached"], TeacherProvider) and not providers["cached"].models
    providers["online"].setup(online.datamodule, "fit", online.datamodule.class_names)
    providers["cached"].setup(online.datamodule, "fit", online.datamodule.class_names)
    torch.manual_seed(0)
    batch = next(iter(online.datamodule.train_dataloader()))
    outputs = {mode: provider.teacher_outputs(batch) for mode, provider in providers.items()}
    assert list(outputs["online"]) == list(outputs["cached"]) == ["flow"]
    expected, got = outputs["online"]["flow"], outputs["cached"]["flow"]
    assert sorted(got.taps) == ["head"]
    assert_equal_on_valid_steps(expected, got, batch["mask"])


def test_cached_distillation_step_has_the_online_loss_terms(
    bench: Path, checkpoint: Path, tmp_path: Path
) -> None:
    online, cached = online_and_cached(bench, tmp_path, checkpoint)
    torch.manual_seed(0)
    batch = next(iter(online.datamodule.train_dataloader()))
    student = online.model.eval()(batch)
    terms = {}
    for mode, module in (("online", online.model), ("cached", cached)):
        teachers = module.teacher_outputs(batch)
        terms[mode] = {o.name: o(student, teachers, batch) for o in module.objectives.values()}
    assert terms["online"].keys() == terms["cached"].keys() and len(terms["online"]) == 3
    for name, value in terms["online"].items():
        torch.testing.assert_close(terms["cached"][name], value, rtol=1e-4, atol=1e-5)


def test_cache_teachers_then_cached_fit_from_the_smoke_config(
    bench: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = cached_args(bench, tmp_path, checkpoint)
    assert main(args) == 0
    manifest = json.loads((tmp_path / "cache" / "flow" / "manifest.json").read_text())
    database = json.loads((bench / "annotations" / "activitynet.json").read_text())["database"]
    assert sorted(manifest["videos"]) == sorted(database)
    assert [f for f, _ in manifest["layout"]] == ["embeddings", "logits", "taps.head"]
    assert manifest["modalities"] == {"flow": "flow"} and manifest["stride"] == pytest.approx(0.1)
    for video_id, entry in manifest["videos"].items():
        rows = np.load(tmp_path / "cache" / "flow" / f"{video_id}.npy")
        steps = round(database[video_id]["duration"] * 10)
        assert rows.shape == (steps, 32 + 8 + 32) and entry["steps"] == steps
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out

    built = cli([*args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                 "--trainer.limit_val_batches=1"])  # fmt: skip
    assert list(built.datamodule.modalities) == ["rgb"]  # no flow decoded
    built.trainer.fit(built.model, built.datamodule)
    logged = built.trainer.callback_metrics
    for objective in built.model.objectives.values():
        assert torch.isfinite(logged[f"train/{objective.name}"])
    assert "val/frame_mAP" in logged


def test_stale_cache_names_what_changed_and_the_rebuild_command(
    bench: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(cached_args(bench, tmp_path, checkpoint)) == 0
    other = tmp_path / "other.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    key = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][key] = state["state_dict"][key] + 1.0
    torch.save(state, other)

    fit_argv = ["crossdistill", "fit", *cached_args(bench, tmp_path, other)]
    monkeypatch.setattr("sys.argv", [*fit_argv, "--trainer.max_steps", "1"])
    built = cli(cached_args(bench, tmp_path, other, "--trainer.max_steps=1"))
    expected = rebuild_command(fit_argv[1:])
    assert expected.startswith("crossdistill cache-teachers --config ")
    with pytest.raises(TeacherCacheError, match="stale") as error:
        built.trainer.fit(built.model, built.datamodule)
    assert f"`{expected}`" in str(error.value) and str(other) in str(error.value)

    built = cli(cached_args(bench, tmp_path, checkpoint, "--data.init_args.window_steps=16"))
    built.datamodule.setup("fit")
    with pytest.raises(TeacherCacheError, match="window_steps"):
        built.model.teacher_provider.attach(built.datamodule)


def test_rebuild_command_keeps_configs_and_data_model_overrides() -> None:
    argv = [
        "fit", "--config", "a b.yaml", "--trainer.max_epochs", "3", "--data.init_args.x=1",
        "--model.init_args.teachers.flow=T.ckpt", "--ckpt_path=last", "--seed_everything=1",
    ]  # fmt: skip
    assert rebuild_command(argv) == (
        "crossdistill cache-teachers --config 'a b.yaml' --data.init_args.x=1 "
        "--model.init_args.teachers.flow=T.ckpt"
    )
    assert rebuild_command(["validate"], fallback="X") == "X"


def test_truncated_or_missing_cache_file_stops_before_training(
    bench: Path, checkpoint: Path, tmp_path: Path
) -> None:
    args = cached_args(bench, tmp_path, checkpoint)
    assert main(args) == 0
    built = cli(args)
    built.datamodule.setup("fit")
    train_video = built.datamodule.datasets["train"].sampler.records[0].video_id
    victim = tmp_path / "cache" / "flow" / f"{train_video}.npy"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as error:
        built.model.teacher_provider.attach(built.datamodule)
    assert "crossdistill cache-teachers" in str(error.value) and str(victim) in str(error.value)
    source = open_cache("flow", checkpoint, built.datamodule, victim.parent)
    record = built.datamodule.annotation_set.records[victim.stem]
    assert "truncated" in str(source.check(record)[0])
    victim.unlink()
    assert "is missing" in str(source.check(record)[0])


def test_interrupted_build_leaves_no_valid_cache(
    bench: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = cached_args(bench, tmp_path, checkpoint)
    assert main(args) == 0  # a complete cache first: the failed rebuild must invalidate it
    written = []
    real = teacher_cache.save_npy_atomic

    def fail_on_third(path: Path, array: np.ndarray) -> dict:
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path)
        return real(path, array)

    monkeypatch.setattr(teacher_cache, "save_npy_atomic", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        main([*args, "--force=true"])
    folder = tmp_path / "cache" / "flow"
    assert not (folder / "manifest.json").exists()
    assert not list(folder.glob(".*"))  # no temporary files left behind
    built = cli(args)
    built.datamodule.setup("fit")
    with pytest.raises(TeacherCacheError, match="interrupted") as error:
        built.model.teacher_provider.attach(built.datamodule)
    assert "crossdistill cache-teachers" in str(error.value)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def broken(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_cached_mode_refuses_augmentation_that_changes_the_teacher_input(
    bench: Path, checkpoint: Path, tmp_path: Path
) -> None:
    assert main(cached_args(bench, tmp_path, checkpoint)) == 0
    augmented = '--data.init_args.augment={"min_scale": 0.8, "flip": true}'
    built = cli(cached_args(bench, tmp_path, checkpoint, augmented))
    built.datamodule.setup("fit")
    with pytest.raises(TeacherCacheError, match="augment: null"):
        built.model.teacher_provider.attach(built.datamodule)
    # colour jitter touches RGB only: a flow teacher's input is unchanged
    jitter = '--data.init_args.augment={"min_scale": 1.0, "flip": false, "colour_jitter": 0.2}'
    built = cli(cached_args(bench, tmp_path, checkpoint, jitter))
    built.datamodule.setup("fit")
    built.model.teacher_provider.attach(built.datamodule)


def test_copied_cache_folder_is_still_valid(bench: Path, checkpoint: Path, tmp_path: Path) -> None:
    """The cache is keyed by content, not by where the files are: a copied cache serves."""
    assert main(cached_args(bench, tmp_path, checkpoint)) == 0
    shutil.copytree(tmp_path / "cache", tmp_path / "moved")
    moved = f"--model.init_args.teacher_source.init_args.folder={tmp_path / 'moved'}"
    built = cli(cached_args(bench, tmp_path, checkpoint, moved))
    built.datamodule.setup("fit")
    built.model.teacher_provider.attach(built.datamodule)
