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
    prepare: tuple[str, ...] = ()
    """commands run first, as a user types them (`crossdistill flow` on the videos)"""
    pretrained: bool = False
    """the configs read the R(2+1)D-18 weights file (random weights stand in for it)"""


# R(2+1)D-18 at 112 x 112 and 16 frames takes minutes a step on a CPU: 32 x 32, 8 frames; one
# batch holds every training clip, so the one step ends the epoch and validation runs
CLIPS_QUICK = (
    "--data.init_args.window_steps=8", "--data.init_args.batch_size=8",
    "--data.init_args.modalities.rgb.init_args.size=32",
    "--data.init_args.modalities.flow.init_args.size=32",
)  # fmt: skip
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
    "epic_kitchens_100": Layout(
        build=real_layouts.epic_kitchens_100,
        root="data/epic_kitchens_100",
        data=["data/real/epic_kitchens_100.yaml"],
        teachers={"flow": ["teacher/clips_r2plus1d_flow.yaml",
                           "teacher/real/epic_kitchens_100_r2plus1d.yaml"]},
        student=["teacher/clips_r2plus1d_rgb.yaml", "teacher/real/epic_kitchens_100_r2plus1d.yaml",
                 "distill/clips_r2plus1d_radevski.yaml",
                 "distill/real/epic_kitchens_100_r2plus1d_radevski.yaml"],
        evaluate=["clips"],
        quick=CLIPS_QUICK,
        pretrained=True,
    ),
    "ssv2": Layout(
        build=lambda root, _: real_layouts.something_something_v2(root),
        root="data/ssv2",
        data=["data/real/ssv2.yaml"],
        teachers={"flow": ["teacher/clips_r2plus1d_flow.yaml", "teacher/real/ssv2_r2plus1d.yaml"]},
        student=["teacher/clips_r2plus1d_rgb.yaml", "teacher/real/ssv2_r2plus1d.yaml",
                 "distill/clips_r2plus1d_radevski.yaml",
                 "distill/real/ssv2_r2plus1d_radevski.yaml"],
        evaluate=["clips"],
        quick=CLIPS_QUICK,
        prepare=("crossdistill flow --videos data/ssv2/videos --out data/ssv2/flow",),
        pretrained=True,
    ),
}  # fmt: skip
PRETRAINED = "data/weights/r2plus1d_18_kinetics400.pt"
"""Where the R(2+1)D-18 configs read torchvision's Kinetics-400 weights."""


def configs(*names: str) -> list[str]:
    return [flag for name in names for flag in ("--config", f"configs/{name}")]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder like a user's checkout: `configs/` (linked) beside `data/`."""
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def random_r2plus1d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """R(2+1)D-18 with random weights, saved as a user saves torchvision's published ones."""
    import torch
    from torchvision.models.video import r2plus1d_18

    path = tmp_path_factory.mktemp("weights") / "r2plus1d_18_random.pt"
    torch.manual_seed(0)
    torch.save(r2plus1d_18().state_dict(), path)
    return path


def lay_out(layout: Layout, workdir: Path, realdata: Path, request: pytest.FixtureRequest) -> None:
    """The dataset in its real layout under `workdir`, the weights file its configs read, and
    the preparation commands run."""
    layout.build(workdir / layout.root, realdata)
    if layout.pretrained:
        weights = workdir / PRETRAINED
        weights.parent.mkdir(parents=True)
        weights.symlink_to(request.getfixturevalue("random_r2plus1d"))
    for command in layout.prepare:
        assert main(command.split()[1:]) == 0, command


@pytest.mark.slow  # 35-50 s a dense layout, 100-220 s a segment one, 20 s a clip one (2 cores)
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_shipped_configs_check_train_test_and_evaluate(
    name: str, realdata: Path, workdir: Path, request: pytest.FixtureRequest
) -> None:
    layout = LAYOUTS[name]
    lay_out(layout, workdir, realdata, request)
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
    values = [v for s in scores.values() for v in (s.values() if isinstance(s, dict) else [s])]
    assert all(np.isfinite(v) for v in values if isinstance(v, float)), scores
    if layout.evaluate[0] == "clips":
        heads = {"clip"} if "ssv2" in name else {"verb", "noun", "action"}
        assert heads <= set(scores), scores


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
        "crossdistill reproduce lee23_thumos14 --smoke",
    ],
    "epic_kitchens_100": [
        "crossdistill data-check --config configs/data/real/epic_kitchens_100.yaml"
        " --config configs/teacher/clips_r2plus1d_rgb.yaml"
        " --config configs/teacher/real/epic_kitchens_100_r2plus1d.yaml",
        "crossdistill reproduce radevski_epic --smoke",
    ],
    "ssv2": [
        "crossdistill data-check --config configs/data/real/ssv2.yaml"
        " --config configs/teacher/clips_r2plus1d_rgb.yaml"
        " --config configs/teacher/real/ssv2_r2plus1d.yaml",
        "crossdistill reproduce radevski_ssv2 --smoke",
    ],
}


@pytest.mark.slow  # about 70 s: three rows trained and tested (clip tables: 25-35 s, four rows)
@pytest.mark.parametrize("name", sorted(WALK))
def test_readme_walk_from_feature_files_to_a_table(
    name: str,
    realdata: Path,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    assert all(command in README for command in LAYOUTS[name].prepare)  # run by lay_out
    lay_out(LAYOUTS[name], workdir, realdata, request)
    for command in WALK[name]:
        assert command in README, command
        assert main(command.split()[1:]) == 0, command
    if name == "charades":
        results = json.loads((workdir / "outputs/dai21_charades-smoke/results.json").read_text())
        assert [row["row"] for row in results["rows"]] == ["rgb", "flow", "dai_flow"]
        assert all(np.isfinite(row["metrics"]["frame_mAP"]["mean"]) for row in results["rows"])
        assert "| Augmented RGB (flow) |" in capsys.readouterr().out
    if name == "thumos14":
        results = json.loads((workdir / "outputs/lee23_thumos14-smoke/results.json").read_text())
        rows = ["rgb", "flow", "two_stream", "decomposed"]
        assert [row["row"] for row in results["rows"]] == rows
        assert all(np.isfinite(row["metrics"]["average_mAP"]["mean"]) for row in results["rows"])
    if name in ("epic_kitchens_100", "ssv2"):
        table = "radevski_epic" if name == "epic_kitchens_100" else "radevski_ssv2"
        results = json.loads((workdir / f"outputs/{table}-smoke/results.json").read_text())
        rows = ["rgb", "flow", "student", "student_kd_only"]
        assert [row["row"] for row in results["rows"]] == rows
        metrics = {"verb_top1", "noun_top1", "action_top1"} if table == "radevski_epic" else {
            "top1", "top5", "ece"}  # fmt: skip
        for row in results["rows"]:
            assert metrics <= set(row["metrics"]), row
            assert all(np.isfinite(m["mean"]) for m in row["metrics"].values())
        assert "| Distilled RGB student |" in capsys.readouterr().out
