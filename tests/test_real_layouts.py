"""The shipped configs of the real benchmarks, end to end on small datasets in their exact
layouts (tests/real_layouts.py): for each dataset, `data-check` with the teacher and student
configs, `fit` of the teachers and of the distilled student (a few steps), `test`, and
`crossdistill evaluate` on the predictions file `test` wrote; then `reproduce` of the real
recipes, as README's "Bringing real data" walks them (the same commands).

Every command runs as a user types it, in a folder holding `data/<dataset>/` and `configs/` (a
link to the repository's), so the data configs' relative roots read the fixture unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lightning_modules.commands import main
from tests import real_layouts
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
QUICK = [
    "--trainer.max_steps=1", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.log_every_n_steps=1", "--data.init_args.num_workers=0",
]  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """A dataset layout with its shipped configs (paths under configs/)."""

    build: Callable[[Path, Path], None]
    root: str
    data: list[str]
    teachers: dict[str, list[str]]
    """teacher name -> its configs (a base, then overlays)"""
    student: list[str]
    evaluate: list[str]
    """`crossdistill evaluate` arguments before `--predictions`"""
    quick: tuple[str, ...] = ()
    """flags of the short runs beyond QUICK (a shorter window, for speed)"""


TSU_TEACHERS = {
    "flow": ["teacher/real/tsu_i3d_rgb.yaml", "teacher/real/tsu_i3d_flow.yaml"],
    "pose": ["teacher/real/tsu_i3d_pose.yaml"],
}
TSU_STUDENT = ["teacher/real/tsu_i3d_rgb.yaml", "distill/real/tsu_i3d_dai21.yaml"]
LAYOUTS = {
    "charades": Layout(
        build=lambda root, _: real_layouts.charades(root),
        root="data/charades",
        data=["data/real/charades_i3d.yaml"],
        teachers={"flow": ["teacher/real/charades_i3d_flow.yaml"]},
        student=["teacher/real/charades_i3d_rgb.yaml", "distill/real/charades_i3d_dai21.yaml"],
        evaluate=["frames", "--ground-truth", "data/charades/annotations/Charades_v1_test.csv",
                  "--protocol", "charades"],
    ),
    "tsu_cs": Layout(
        build=lambda root, realdata: real_layouts.tsu(root, realdata, "CS"),
        root="data/tsu",
        data=["data/real/tsu_i3d.yaml"],
        teachers=TSU_TEACHERS,
        student=TSU_STUDENT,
        evaluate=["frames", "--ground-truth", "data/tsu/annotations/smarthome_CS_51.json",
                  "--format", "tsu", "--subset", "testing"],
    ),
    "tsu_cv": Layout(
        build=lambda root, realdata: real_layouts.tsu(root, realdata, "CV"),
        root="data/tsu",
        data=["data/real/tsu_i3d.yaml", "data/real/tsu_i3d_cv.yaml"],
        teachers=TSU_TEACHERS,
        student=TSU_STUDENT,
        evaluate=["frames", "--ground-truth", "data/tsu/annotations/smarthome_CV_51.json",
                  "--format", "tsu", "--subset", "testing"],
    ),
    "pku_mmd": Layout(
        build=lambda root, _: real_layouts.pku_mmd(root),
        root="data/pku_mmd",
        data=["data/real/pku_mmd_i3d.yaml"],
        teachers=TSU_TEACHERS,
        student=TSU_STUDENT,
        evaluate=["frames", "--ground-truth", "data/pku_mmd/annotations/test",
                  "--format", "pku_mmd"],
    ),
    "thumos14": Layout(
        build=real_layouts.thumos14,
        root="data/thumos14",
        data=["data/real/thumos14_i3d.yaml"],
        teachers={"flow": ["teacher/real/thumos14_i3d_flow.yaml"]},
        student=["teacher/real/thumos14_i3d_rgb.yaml", "distill/real/thumos14_i3d_lee23.yaml"],
        evaluate=["segments", "--ground-truth", "data/thumos14/annotations/thumos14.json",
                  "--subset", "test", "--tiou", "0.3", "0.5", "0.7"],
        # 2,304-step windows take minutes on a CPU: 256 steps of 4 frames at 30 fps
        quick=("--data.init_args.window_steps=256", "--data.init_args.window_seconds=34.133333"),
    ),
    "activitynet": Layout(
        build=real_layouts.activitynet,
        root="data/activitynet",
        data=["data/real/activitynet_i3d.yaml"],
        teachers={"flow": ["teacher/real/activitynet_i3d_flow.yaml"]},
        student=["teacher/real/activitynet_i3d_rgb.yaml", "distill/real/thumos14_i3d_lee23.yaml",
                 "distill/real/activitynet_i3d_lee23.yaml"],
        evaluate=["segments", "--ground-truth",
                  "data/activitynet/annotations/activity_net.v1-3.json", "--subset", "validation"],
    ),
}  # fmt: skip


def configs(*names: str) -> list[str]:
    return [flag for name in names for flag in ("--config", f"configs/{name}")]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder like a user's checkout: `configs/` (linked) beside `data/`."""
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow  # 35-50 s a dense layout, 100-220 s a segment one, on the shared 2-core CPU
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_shipped_configs_check_train_test_and_evaluate(
    name: str, realdata: Path, workdir: Path
) -> None:
    layout = LAYOUTS[name]
    layout.build(workdir / layout.root, realdata)
    data = configs(*layout.data)
    checkpoints = {}
    for teacher, model in layout.teachers.items():
        assert main(["data-check", *data, *configs(*model)]) == 0, model
        fit = ["fit", *data, *configs("trainer/cpu.yaml", *model), *QUICK, *layout.quick]
        fit.append(f"--run_name={teacher}")
        assert main(fit) == 0
        checkpoints[teacher] = workdir / "outputs" / "runs" / teacher / "checkpoints" / "best.ckpt"
        assert checkpoints[teacher].is_file()
    loaded = [f"--model.init_args.teachers.{t}={path}" for t, path in checkpoints.items()]
    assert main(["data-check", *data, *configs(*layout.student), *loaded]) == 0
    fit = ["fit", *data, *configs("trainer/cpu.yaml", *layout.student), *QUICK, *layout.quick]
    fit += loaded
    assert main([*fit, "--run_name=student"]) == 0
    run = workdir / "outputs" / "runs" / "student"
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", "best"]) == 0
    written = sorted(run.rglob("predictions/*.*"))
    assert len(written) == 1, written
    if layout.evaluate[0] == "segments":
        _keep_labels_of_the_subset(written[0], layout.evaluate)
    scores = _evaluate([*layout.evaluate, "--predictions", str(written[0])])
    assert all(np.isfinite(v) for v in scores.values() if isinstance(v, float)), scores


def _evaluate(argv: list[str]) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", *argv]) == 0
    return json.loads(out.getvalue())


def _keep_labels_of_the_subset(predictions: Path, evaluate: list[str]) -> None:
    """Drop predicted labels without ground truth in the evaluated subset (the fix `evaluate`
    names: the official evaluator raises on them): a few videos hold only some classes."""
    from datamodules.annotations import read_activitynet

    truth = read_activitynet(evaluate[evaluate.index("--ground-truth") + 1])
    subset = evaluate[evaluate.index("--subset") + 1]
    labels = {
        s.label for r in truth.records.values() if r.subset.lower() == subset for s in r.segments
    }
    found = json.loads(predictions.read_text())
    for video, rows in found["results"].items():
        found["results"][video] = [row for row in rows if row["label"] in labels]
    predictions.write_text(json.dumps(found))


# README "Bringing real data": each command as written there, run in a folder laid out as it says
WALK = {
    "charades": [
        "crossdistill data-check --config configs/data/real/charades_i3d.yaml"
        " --config configs/teacher/real/charades_i3d_rgb.yaml",
        "crossdistill reproduce dai21_charades --smoke",
    ],
    "thumos14": [
        "crossdistill data-check --config configs/data/real/thumos14_i3d.yaml"
        " --config configs/teacher/real/thumos14_i3d_rgb.yaml",
    ],
}


@pytest.mark.slow  # about 70 s: three rows trained and tested
@pytest.mark.parametrize("name", sorted(WALK))
def test_readme_walk_from_feature_files_to_a_table(
    name: str, realdata: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = LAYOUTS[name]
    layout.build(workdir / layout.root, realdata)
    for command in WALK[name]:
        assert command in README, command
        assert main(command.split()[1:]) == 0, command
    if name == "charades":
        results = json.loads((workdir / "outputs/dai21_charades-smoke/results.json").read_text())
        assert [row["row"] for row in results["rows"]] == ["rgb", "flow", "dai_flow"]
        assert all(np.isfinite(row["metrics"]["frame_mAP"]["mean"]) for row in results["rows"])
        assert "| Augmented RGB (flow) |" in capsys.readouterr().out
