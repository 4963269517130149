"""DistillModule: teachers frozen by construction, every objective term logged, the student's
checkpoint free of teachers, mixed precision; through the configs in configs/distill/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.distill import DistillModule
from tests.cli_helpers import CONFIGS, FEATURES, quiet_features_run, tiny, with_base
from tests.data_helpers import tiny_benchmark, with_random_features
from tests.test_teacher import CONSOLE_SCRIPT, cli


@pytest.fixture(scope="module")
def feature_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench = tiny_benchmark(tmp_path_factory)
    return with_random_features(bench, tmp_path_factory.mktemp("distill") / "bench")


@pytest.fixture(scope="module")
def teacher_checkpoints(feature_bench: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Flow and pose feature teachers, one training step each, saved as checkpoints."""
    checkpoints = {}
    for modality in ("flow", "pose"):
        runs = tmp_path_factory.mktemp(f"teacher_{modality}")
        config = CONFIGS / "teacher" / f"dense_features_{modality}.yaml"
        built = cli([*FEATURES, "--config", str(config), *quiet_features_run(feature_bench, runs),
                     "--trainer.max_steps=1"])  # fmt: skip
        built.trainer.fit(built.model, built.datamodule)
        path = runs / f"{modality}.ckpt"
        built.trainer.save_checkpoint(path)
        checkpoints[modality] = path
    return checkpoints


def distill_configs() -> list[Path]:
    """The dense feature-level distillation configs (this module's teachers); the clip and
    segment ones train end to end in the reproduce tests (tests/test_reproduce.py)."""
    return sorted((CONFIGS / "distill").glob("dense_features_*.yaml"))


def teacher_names(config: Path) -> set[str]:
    """The teachers a config (or, for an overlay without its own, its base) names."""
    for path in reversed(with_base(config)[1::2]):
        teachers = yaml.safe_load(Path(path).read_text())["model"]["init_args"].get("teachers")
        if teachers:
            return set(teachers)
    return set()


def build(config: Path, root: Path, runs: Path, teachers: dict, *extra: str):
    named = teacher_names(config) or set(teachers)
    overrides = [f"--model.init_args.teachers.{n}={p}" for n, p in teachers.items() if n in named]
    return cli([*FEATURES, *with_base(config), *quiet_features_run(root, runs), *overrides, *extra])


def teacher_states(module: DistillModule) -> dict[str, dict[str, torch.Tensor]]:
    """A copy of every teacher's tensors, to compare after training."""
    return {
        name: {k: v.clone() for k, v in teacher.state_dict().items()}
        for name, teacher in module.teachers.items()
    }


def assert_teachers_unchanged(module: DistillModule, before: dict) -> None:
    for name, teacher in module.teachers.items():
        for key, value in teacher.state_dict().items():
            assert torch.equal(value, before[name][key]), f"teacher {name} changed: {key}"


@pytest.mark.parametrize("config", distill_configs(), ids=lambda p: p.stem)
def test_distill_config_trains_with_frozen_teachers(
    config: Path, feature_bench: Path, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    built = build(config, feature_bench, tmp_path, teacher_checkpoints, "--trainer.max_steps=3")
    module: DistillModule = built.model
    frozen = teacher_states(module)
    built.trainer.fit(module, built.datamodule)

    assert_teachers_unchanged(module, frozen)
    for teacher in module.teachers.values():
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    optimised = {
        id(p) for group in built.trainer.optimizers[0].param_groups for p in group["params"]
    }
    assert not any(id(p) in optimised for t in module.teachers.values() for p in t.parameters())
    assert any(id(p) in optimised for p in module.objectives.parameters()) or not list(
        module.objectives.parameters()
    )

    logged = built.trainer.callback_metrics
    for objective in module.objectives.values():
        assert f"train/{objective.name}" in logged and torch.isfinite(
            logged[f"train/{objective.name}"]
        )
    assert "train/task" in logged and "val/frame_mAP" in logged

    path = tmp_path / "student.ckpt"
    built.trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(k.startswith(("model.", "objectives.")) for k in state), sorted(state)[:5]


def test_bf16_mixed_distillation_has_finite_fp32_terms(
    feature_bench: Path, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    config = CONFIGS / "distill" / "dense_features_dai21.yaml"
    built = build(config, feature_bench, tmp_path, teacher_checkpoints,
                  "--trainer.max_steps=2", "--trainer.precision=bf16-mixed")  # fmt: skip
    built.trainer.fit(built.model, built.datamodule)
    assert all(torch.isfinite(v) for k, v in built.trainer.callback_metrics.items() if "train" in k)


def test_evaluation_loads_only_what_the_student_reads(
    feature_bench: Path, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    """Training loads the teachers' flow and pose; validation and test load the RGB the
    student reads, and nothing else (decoding the rest there cost time for nothing)."""
    config = CONFIGS / "distill" / "dense_features_dai21.yaml"
    built = build(config, feature_bench, tmp_path, teacher_checkpoints, "--trainer.max_steps=1")
    built.trainer.fit(built.model, built.datamodule)
    data = built.datamodule
    assert set(next(iter(data.train_dataloader()))["inputs"]) == {"rgb", "flow", "pose"}
    assert set(next(iter(data.val_dataloader()))["inputs"]) == {"rgb"}
    built.trainer.test(built.model, data)
    assert "test/frame_mAP" in built.trainer.callback_metrics
    assert set(next(iter(data.test_dataloader()))["inputs"]) == {"rgb"}


def test_frame_level_student_trains_its_backbone_with_frozen_teachers(tmp_path_factory) -> None:
    """configs/distill/dense_dai21.yaml on frames: flow and pose teachers of one step, then two
    student steps. The teachers stay bit-identical, the RGB backbone itself learns (what the
    feature-level students cannot) from losses on its own output, and the student checkpoint
    holds no teacher tensor."""
    bench = tiny_benchmark(tmp_path_factory)
    frames = ["--config", str(CONFIGS / "data" / "synthetic.yaml")]
    size = ["--data.init_args.modalities.rgb.init_args.size", "32"]
    checkpoints = {}
    for modality in ("flow", "pose"):
        runs = tmp_path_factory.mktemp(f"frame_teacher_{modality}")
        config = CONFIGS / "teacher" / f"dense_{modality}.yaml"
        built = cli([*frames, "--config", str(config), *tiny(bench, runs), "--trainer.max_steps=1"])
        built.trainer.fit(built.model, built.datamodule)
        checkpoints[modality] = runs / f"{modality}.ckpt"
        built.trainer.save_checkpoint(checkpoints[modality])

    runs = tmp_path_factory.mktemp("frame_student")
    built = cli([
        *frames, *with_base(CONFIGS / "distill" / "dense_dai21.yaml"), *tiny(bench, runs),
        *size, "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
        *(f"--model.init_args.teachers.{name}={path}" for name, path in checkpoints.items()),
    ])  # fmt: skip
    module: DistillModule = built.model
    frozen = teacher_states(module)
    backbone = {k: v.clone() for k, v in module.model.encoder.state_dict().items()}
    built.trainer.fit(module, built.datamodule)

    assert set(module.teachers) == {"flow", "pose"}
    assert {o.tap for o in module.objectives.values()} == {"embeddings"}
    assert_teachers_unchanged(module, frozen)
    moved = [
        k for k, v in module.model.encoder.state_dict().items() if not torch.equal(v, backbone[k])
    ]
    assert any(k.startswith("stem.") for k in moved), moved
    for objective in module.objectives.values():
        assert torch.isfinite(built.trainer.callback_metrics[f"train/{objective.name}"])
    built.trainer.save_checkpoint(runs / "student.ckpt")
    state = torch.load(runs / "student.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(k.startswith(("model.", "objectives.")) for k in state), sorted(state)[:5]


def test_missing_teacher_checkpoint_names_the_fix(feature_bench: Path, tmp_path: Path) -> None:
    config = CONFIGS / "distill" / "dense_features_dai21.yaml"
    # jsonargparse re-raises instantiation errors with their message kept
    with pytest.raises(Exception, match="train the teacher first"):
        build(config, feature_bench, tmp_path, {"flow": tmp_path / "nope.ckpt"})


def test_a_teacher_of_another_class_order_is_refused(
    feature_bench: Path, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    """Teachers record their classes in logit order; distilling logit for logit from a teacher
    whose classes are in another order would teach the wrong classes."""
    from lightning_modules.teachers import TeacherMismatchError

    checkpoint = torch.load(teacher_checkpoints["flow"], map_location="cpu", weights_only=False)
    classes = checkpoint["class_names"]
    assert isinstance(classes, list) and len(classes) == 8
    checkpoint["class_names"] = [classes[1], classes[0], *classes[2:]]
    swapped = tmp_path / "swapped.ckpt"
    torch.save(checkpoint, swapped)
    config = CONFIGS / "distill" / "dense_features_dai21_flow.yaml"
    built = build(config, feature_bench, tmp_path, {"flow": swapped}, "--trainer.max_steps=1")
    with pytest.raises(TeacherMismatchError, match=rf"class 0 is {classes[1]!r} in the teacher"):
        built.trainer.fit(built.model, built.datamodule)
    # through the command: one message, exit 1; the failed start does not block its run name
    from lightning_modules.commands import main

    runs = tmp_path / "runs"
    args = [
        "fit", *FEATURES, *with_base(config), *quiet_features_run(feature_bench, runs),
        f"--model.init_args.teachers.flow={swapped}", "--run_name=kd",
    ]  # fmt: skip
    for _ in range(2):
        assert main(args) == 1
    assert (runs / "kd" / "config.failed.yaml").is_file()
    assert not (runs / "kd" / "config.yaml").exists()


def test_a_wrong_teacher_file_is_named_with_what_it_is(
    feature_bench: Path, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    """A text file, a student export, a distilled student's checkpoint or a teacher of another
    modality under `teachers.flow`: each refused with the file, what it is and the fix."""
    from lightning_modules.teachers import TeacherMismatchError, load_teacher_module

    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(TeacherMismatchError, match=r"notes\.ckpt is not a checkpoint"):
        load_teacher_module(text)
    export = tmp_path / "best.student.pt"
    torch.save({"model": {}, "state_dict": {}, "task": {}, "modalities": ["rgb"]}, export)
    with pytest.raises(TeacherMismatchError, match=r"is a student export"):
        load_teacher_module(export)
    flow = torch.load(teacher_checkpoints["flow"], map_location="cpu", weights_only=False)
    student = {**flow, "hyper_parameters": {**flow["hyper_parameters"], "teachers": {}}}
    torch.save(student, tmp_path / "student.ckpt")
    with pytest.raises(TeacherMismatchError, match=r"a distilled student's checkpoint"):
        load_teacher_module(tmp_path / "student.ckpt")
    config = CONFIGS / "distill" / "dense_features_dai21_flow.yaml"
    pose_as_flow = {"flow": teacher_checkpoints["pose"]}
    built = build(config, feature_bench, tmp_path, pose_as_flow, "--trainer.max_steps=1")
    with pytest.raises(TeacherMismatchError, match=r"teacher 'flow' .* reads \['pose'\]"):
        built.trainer.fit(built.model, built.datamodule)


@pytest.mark.slow
def test_smoke_distillation_under_ddp_and_bf16(tmp_path: Path) -> None:
    """configs/smoke/distill.yaml after configs/smoke/teacher.yaml, as the README says, on two
    CPU processes (gloo) with bf16 mixed precision."""
    shared = [f"--data.init_args.root={tmp_path / 'synthetic'}"]
    teacher = cli([
        "--config", str(CONFIGS / "smoke" / "teacher.yaml"), *shared,
        f"--trainer.default_root_dir={tmp_path / 'teacher'}", "--trainer.max_epochs=1",
    ])  # fmt: skip
    teacher.trainer.fit(teacher.model, teacher.datamodule)
    checkpoint = tmp_path / "teacher.ckpt"
    teacher.trainer.save_checkpoint(checkpoint)
    result = subprocess.run(
        [CONSOLE_SCRIPT, "fit", "--config", CONFIGS / "smoke" / "distill.yaml", *shared,
         f"--model.init_args.teachers.flow={checkpoint}", "--trainer.max_epochs=1",
         f"--trainer.default_root_dir={tmp_path / 'student'}", "--trainer.accelerator=cpu",
         "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.precision=bf16-mixed"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "student").rglob("*.ckpt"))
