"""Student-only export (lightning_modules/export.py): written next to every checkpoint of a fit,
opened by a plain `torch.load(weights_only=True)`, holding the student's tensors and nothing
else, loaded and tested without teacher or distillation code, with the checkpoint's results."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.commands import main
from lightning_modules.export import (
    FORMAT_VERSION,
    ExportError,
    StudentExport,
    build_model,
    export_payload,
    load_student,
    read_export,
    save_export,
)
from tests.cli_helpers import CONFIGS, FEATURES, REPO, quiet_features_run, with_base
from tests.data_helpers import tiny_benchmark, with_random_features

DENSE_TASK = {"class_path": "lightning_modules.tasks.DenseTask"}
BLOCKED = (
    "lightning_modules.distill",
    "lightning_modules.distillation",
    "lightning_modules.teacher",
    "lightning_modules.teachers",
)


@pytest.fixture(scope="module")
def feature_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench = tiny_benchmark(tmp_path_factory)
    return with_random_features(bench, tmp_path_factory.mktemp("export") / "bench")


@pytest.fixture(scope="module")
def runs(feature_bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flow feature teacher (one step), then a 2-step Dai et al. student, both through
    `crossdistill fit`; run folders `runs/{flow,student}`. The flow teacher also fills the
    config's pose slot (same width): what is tested is the student's file, not the teachers."""
    runs = tmp_path_factory.mktemp("export_runs")
    config = CONFIGS / "teacher" / "dense_features_flow.yaml"
    args = [*FEATURES, "--config", str(config), *quiet_features_run(feature_bench, runs)]
    assert main(["fit", *args, "--trainer.max_steps=1", "--run_name", "flow"]) == 0
    teacher = runs / "flow" / "checkpoints" / "last.ckpt"
    teachers = [f"--model.init_args.teachers.{m}={teacher}" for m in ("flow", "pose")]
    config = CONFIGS / "distill" / "dense_features_dai21.yaml"
    args = [*FEATURES, *with_base(config), *quiet_features_run(feature_bench, runs), *teachers]
    assert main(["fit", *args, "--trainer.max_steps=2", "--run_name", "student"]) == 0
    return runs


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_every_checkpoint_of_a_fit_has_its_student_export(runs: Path) -> None:
    folder = runs / "student" / "checkpoints"
    # written atomically: no temporary file is left beside them
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["best.ckpt", "best.student.pt", "last.ckpt", "last.student.pt"]
    for name in ("best", "last"):
        export = torch.load(folder / f"{name}.student.pt", weights_only=True)
        assert export["format_version"] == FORMAT_VERSION
        assert export["modalities"] == ["rgb"] and export["dropped_modules"] == []
        assert export["model"]["class_path"] == "lightning_modules.models.ActionModel"
        assert (
            export["task"] == {**DENSE_TASK, "init_args": {"reduction": "pdan"}}
            and len(export["class_names"]) == 8
        )
        assert export["trained_with"]["module"] == "lightning_modules.distill.DistillModule"
        assert export["trained_with"]["checkpoint"] == f"{name}.ckpt"
        state = checkpoint_state(folder / f"{name}.ckpt")
        assert export["state_dict"].keys() == {
            k.removeprefix("model.") for k in state if k.startswith("model.")
        }
        for key, value in export["state_dict"].items():
            assert torch.equal(value, state[f"model.{key}"]), key
    # a TeacherModule fit exports its model (here the flow teacher, which reads flow)
    teacher = read_export(runs / "flow" / "checkpoints" / "last.student.pt")
    assert teacher["modalities"] == ["flow"]
    assert teacher["trained_with"]["module"] == "lightning_modules.teacher.TeacherModule"


def test_export_holds_the_student_and_no_teacher_or_objective_tensor(runs: Path) -> None:
    from lightning_modules.distill import DistillModule

    folder = runs / "student" / "checkpoints"
    module = DistillModule.load_from_checkpoint(folder / "best.ckpt", map_location="cpu")
    export = torch.load(folder / "best.student.pt", weights_only=True)
    student = module.model.state_dict()
    assert export["state_dict"].keys() == student.keys()
    assert sum(v.numel() for v in export["state_dict"].values()) == sum(
        v.numel() for v in student.values()
    )
    # what must stay out: the teachers, and the objectives' projection heads
    assert module.teachers and any("projections" in k for k in module.objectives.state_dict())

    model = load_student(folder / "best.student.pt")
    module.model.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {"rgb": torch.randn(3, 128, 40, generator=generator)}
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 30:] = False
    with torch.no_grad():
        expected, found = module.model(inputs, mask), model(inputs, mask)
    assert not model.training
    assert torch.equal(found.logits, expected.logits)
    assert torch.equal(found.embeddings, expected.embeddings)


def read_metrics(folder: Path) -> dict[str, float]:
    with (folder / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("test/") and v}


BLOCKER = """
import sys
blocked, attempts = {blocked!r}, []
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name in blocked or name.startswith(tuple(b + "." for b in blocked)):
            attempts.append(name)
            raise ImportError("blocked for the test: " + name)
sys.meta_path.insert(0, Blocker())
from lightning_modules.commands import main
status = main(sys.argv[1:])
import lightning_modules.export
print("BLOCKED IMPORTS:", attempts, "LOADED:", [m for m in sys.modules if m.startswith(blocked)])
sys.exit(status)
"""


def test_crossdistill_test_of_the_export_needs_no_distillation_code_and_matches_the_checkpoint(
    runs: Path, feature_bench: Path
) -> None:
    run = runs / "student"
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", "best"]) == 0
    exported = [
        *FEATURES, *quiet_features_run(feature_bench, runs), "--data.init_args.load=[rgb]",
        "--model=lightning_modules.export.ExportedStudent",
        f"--model.init_args.path={run / 'checkpoints' / 'best.student.pt'}",
        "--run_name=exported",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=BLOCKED), "test", *exported],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BLOCKED IMPORTS: [] LOADED: []" in done.stdout, done.stdout[-2000:]

    expected, found = read_metrics(run / "test"), read_metrics(runs / "exported" / "test")
    assert expected.keys() == found.keys() >= {"test/frame_mAP", "test/loss"}
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, abs=1e-6), key
    reference = np.load(run / "test" / "predictions" / "frames.npz")
    scores = np.load(runs / "exported" / "test" / "predictions" / "frames.npz")
    assert sorted(scores.files) == sorted(reference.files)
    for video in set(reference.files) - {"classes"}:
        np.testing.assert_allclose(scores[video], reference[video], atol=1e-6)

    # predict writes the same predictions files
    predict = [a.replace("--run_name=exported", "--run_name=predicted") for a in exported]
    assert main(["predict", *predict]) == 0
    predicted = np.load(runs / "predicted" / "predict" / "predictions" / "frames.npz")
    for video in set(reference.files) - {"classes"}:
        np.testing.assert_allclose(predicted[video], reference[video], atol=1e-6)


def test_exported_student_names_missing_modalities(runs: Path, feature_bench: Path) -> None:
    args = [
        *FEATURES, *quiet_features_run(feature_bench, runs), "--data.init_args.load=[flow]",
        "--model=lightning_modules.export.ExportedStudent", "--run_name=wrong_inputs",
        f"--model.init_args.path={runs / 'student' / 'checkpoints' / 'best.student.pt'}",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"reads \['rgb'\], but the data loads \['flow'\]"):
        main(["test", *args])


def test_files_that_are_not_exports_are_refused_by_name(runs: Path, tmp_path: Path) -> None:
    folder = runs / "student" / "checkpoints"
    checkpoint = folder / "best.ckpt"
    # whether torch.load(weights_only=True) opens a Lightning checkpoint depends on its contents
    refused = rf"{re.escape(str(checkpoint))} is not a student export.*Lightning checkpoint"
    with pytest.raises(ExportError, match=rf"{refused}.*Expected a student export"):
        load_student(checkpoint)
    text = tmp_path / "notes.pt"
    text.write_text("not a tensor file")
    with pytest.raises(ExportError, match=rf"{re.escape(str(text))} is not a student export.*best"):
        load_student(text)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_student(tmp_path / "missing.student.pt")

    export = torch.load(folder / "best.student.pt", weights_only=True)
    for version, fix in ((FORMAT_VERSION + 1, "upgrade crossdistill"), (0, "export it again")):
        other = save_export({**export, "format_version": version}, tmp_path / f"v{version}.pt")
        message = rf"{other} has export format version {version}, this crossdistill reads "
        with pytest.raises(ExportError, match=rf"{message}version {FORMAT_VERSION}: {fix}"):
            load_student(other)


def fake_checkpoint(config: dict, model: torch.nn.Module) -> dict:
    """What a fit's checkpoint holds for `model` built from `config` (for unit tests)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["objectives.atomic.head.weight"] = torch.ones(2)
    hyper_parameters = {"model": config, "teachers": {}, "task": DENSE_TASK}
    return {"state_dict": state, "hyper_parameters": hyper_parameters}


def pdan(width: int) -> dict:
    return {
        "class_path": "lightning_modules.models.PDAN",
        "init_args": {"in_channels": width, "num_classes": 3, "hidden_channels": 8,
                      "dilations": [1, 2], "dropout": 0.0},
    }  # fmt: skip


def test_decomposed_student_export_drops_the_branch_detectors(tmp_path: Path) -> None:
    """Lee et al.'s inference is the joint path: the branch detectors stay out of the file."""
    config = {
        "class_path": "lightning_modules.models.DecomposedStudent",
        "init_args": {
            "encoder": {
                "class_path": "lightning_modules.models.FeatureProjection",
                "init_args": {"in_channels": 16, "out_channels": 20, "modality": "rgb"},
            },
            "branch_head": pdan(12),
            "joint_head": pdan(24),
            "share_branch_head": False,
        },
    }
    torch.manual_seed(0)
    model = build_model({"model": config}).eval()
    path = save_export(
        export_payload(fake_checkpoint(config, model), model, ["a", "b", "c"]),
        tmp_path / "decomposed.student.pt",
    )
    export = torch.load(path, weights_only=True)
    assert export["dropped_modules"] == ["branch_head", "motion_head"]
    assert not any(k.startswith(("branch_head.", "motion_head.", "objectives")) for k in export)
    assert not any(k.startswith(("branch_head.", "motion_head.")) for k in export["state_dict"])
    kept = {k for k in model.state_dict() if not k.startswith(("branch_head.", "motion_head."))}
    assert set(export["state_dict"]) == kept

    loaded = load_student(path)
    inputs, mask = {"rgb": torch.randn(2, 16, 14)}, torch.ones(2, 14, dtype=torch.bool)
    mask[0, 9:] = False
    with torch.no_grad():
        expected, found = model(inputs, mask), loaded(inputs, mask)
    assert torch.equal(found.logits, expected.logits)
    assert "motion" in expected.extras and "motion" not in found.extras
    loaded.inference_only(False)
    with pytest.raises(
        RuntimeError, match=r"DecomposedStudent\.motion_head is not in the student export"
    ):
        loaded(inputs, mask)


def test_pretrained_paths_are_cleared_so_loading_needs_no_other_file(tmp_path: Path) -> None:
    encoder = {"modality": "rgb", "in_channels": 3, "stem_channels": 4, "widths": [8],
               "depths": [1]}  # fmt: skip
    weights = tmp_path / "backbone.pt"
    torch.save(build_model({"model": {
        "class_path": "lightning_modules.models.VideoCNN", "init_args": encoder,
    }}).state_dict(), weights)  # fmt: skip
    config = {
        "class_path": "lightning_modules.models.ActionModel",
        "init_args": {
            "encoder": {
                "class_path": "lightning_modules.models.VideoCNN",
                "init_args": {**encoder, "pretrained": str(weights)},
            },
            "head": pdan(8),
        },
    }
    model = build_model({"model": config})
    path = save_export(
        export_payload(fake_checkpoint(config, model), model, ["a", "b", "c"]), tmp_path / "s.pt"
    )
    weights.unlink()
    export = read_export(path)
    assert export["model"]["init_args"]["encoder"]["init_args"]["pretrained"] is None
    loaded = load_student(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_module_built_without_a_config_is_refused_before_training(tmp_path: Path) -> None:
    from lightning_modules.models import PDAN, ActionModel, FeatureProjection
    from lightning_modules.tasks import DenseTask
    from lightning_modules.teacher import TeacherModule

    module = TeacherModule(ActionModel(FeatureProjection(4, 8, "rgb"), PDAN(8, 3)), DenseTask())
    with pytest.raises(
        ExportError, match=r"`model` was given as an object \(ActionModel\).*train through the CLI"
    ):
        StudentExport(tmp_path).setup(None, module, "fit")  # type: ignore[arg-type]
