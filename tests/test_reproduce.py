"""`crossdistill reproduce`: recipes, their checks, the results files, and the demo end to end
in smoke mode (every row trained, tested and resumable)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from lightning_modules.reproduce.recipe import RECIPES, RecipeError, load_recipe
from lightning_modules.reproduce.results import markdown, summarise
from lightning_modules.reproduce.runner import TableRunner
from tests.test_teacher import CONSOLE_SCRIPT

RESULT_KEYS = {
    "row", "label", "method", "inference_modalities", "teachers", "metrics", "paper"
}  # fmt: skip


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


@pytest.mark.parametrize("table", recipes())
def test_every_recipe_loads_with_teachers_before_students(table: str) -> None:
    recipe = load_recipe(table)
    order = [row.name for row in recipe.ordered_rows()]
    for row in recipe.rows:
        assert all(order.index(t) < order.index(row.name) for t in row.teachers.values())
        assert row.fit and all(path.is_file() for path in row.fit)
    smoke = load_recipe(table, smoke=True)
    assert smoke.final_args
    if recipe.synthetic:  # a table of a real dataset (dai21_charades, ...) has none to shrink
        assert smoke.synthetic.get("videos", 160) <= 16
    else:
        assert all(path.is_relative_to(RECIPES.parent / "data" / "real") for path in recipe.data)


def _write(tmp_path: Path, recipe: dict) -> str:
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


BASE = {"table": "t", "data": "data/synthetic_features.yaml"}
ROW = {"name": "rgb", "fit": ["teacher/dense_features_rgb.yaml"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": [{**ROW, "teachers": {"flow": "nope"}}]}, "unknown teachers"),
        ({"rows": [{**ROW, "fit": ["teacher/missing.yaml"]}]}, "not found"),
        ({"rows": [ROW, ROW]}, "unique"),
        (
            {"rows": [ROW], "prepare": [{"name": "f", "extract": "ghost", "data": BASE["data"],
                                         "modality": "rgb", "out": "features/rgb"}]},
            "neither a row nor an earlier fit step",
        ),
        (
            {"rows": [{**ROW, "teachers": {"a": "b"}}, {**ROW, "name": "b",
                                                         "teachers": {"a": "rgb"}}]},
            "use each other as teachers",
        ),
    ],
)  # fmt: skip
def test_bad_recipes_name_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, {**BASE, **change}))


def test_data_flag_keeps_the_rows_of_the_tables_data(tmp_path: Path) -> None:
    """`--data` replaces the table's data config: rows with their own (frames) are left out,
    and a kept row that distills from one of them is refused."""
    dai = load_recipe("dai21_dense")
    kept = dai.on_table_data()
    frames = {row.name for row in dai.rows if row.data}
    assert frames == {"rgb_frames", "flow_frames", "pose_frames", "dai_frames"}
    assert [row.name for row in kept.rows] == [r.name for r in dai.rows if r.name not in frames]
    data = tmp_path / "real.yaml"
    data.write_text("data: {}\n")
    assert TableRunner(dai, tmp_path / "out", str(data)).recipe.rows == kept.rows
    own = {"data": "data/synthetic.yaml"}
    borrowed = {"rows": [{**ROW, **own}, {**ROW, "name": "s", "teachers": {"flow": "rgb"}}]}
    with pytest.raises(RecipeError, match=r"row s distills from \['rgb'\]"):
        load_recipe(_write(tmp_path, {**BASE, **borrowed})).on_table_data()
    with pytest.raises(RecipeError, match="every row names its own data config"):
        load_recipe(_write(tmp_path, {**BASE, "rows": [{**ROW, **own}]})).on_table_data()


@pytest.mark.parametrize("table", ["dai21_dense", "lee23_segments"])
def test_backbones_train_on_a_pool_the_benchmark_does_not_hold(
    table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feature tables' backbones fit on the pretraining pool (another seed), and their
    features are extracted from the benchmark, as I3D is trained on Kinetics, not Charades."""
    recipe = load_recipe(table)
    assert recipe.pretraining["seed"] != recipe.synthetic.get("seed", 0)
    assert recipe.pretraining["videos"] == recipe.synthetic["videos"]
    runner = TableRunner(recipe, tmp_path / "out")
    assert [job.name for job in runner.jobs()[:2]] == ["synthetic benchmark", "pretraining pool"]
    roots: dict[str, str] = {}

    def fit(self: TableRunner, configs: list[Path], flags: list[str], run_dir: Path) -> None:
        roots[run_dir.name] = next(f for f in flags if f.startswith("--data.init_args.root="))
        run_dir.mkdir(parents=True)

    monkeypatch.setattr(TableRunner, "fit", fit)
    extracted: list[list[str]] = []
    monkeypatch.setattr("lightning_modules.reproduce.runner._extract", extracted.append)
    for step in recipe.prepare:
        if step.fit:
            runner.fit_step(step)
        else:
            runner.extract(step, tmp_path / "features")
    pool, benchmark = runner.pool, runner.benchmark
    assert set(roots.values()) == {f"--data.init_args.root={pool}"} and roots
    assert all(f"--data.init_args.root={benchmark}" in argv for argv in extracted) and extracted
    smoke = load_recipe(table, smoke=True)
    assert smoke.pretraining["videos"] == smoke.synthetic["videos"] <= 16


def test_a_pretraining_pool_with_the_benchmarks_seed_is_refused(tmp_path: Path) -> None:
    same = {**BASE, "rows": [ROW], "synthetic": {"videos": 20, "seed": 3},
            "pretraining": {"seed": 3}}  # fmt: skip
    with pytest.raises(RecipeError, match="pretraining needs a seed other than the benchmark's"):
        load_recipe(_write(tmp_path, same))
    other = load_recipe(_write(tmp_path, {**same, "pretraining": {"seed": 4}}))
    assert other.pretraining == {"videos": 20, "seed": 4}
    assert [job.name for job in TableRunner(other, tmp_path / "o").jobs()] == [
        "synthetic benchmark", "pretraining pool", "rgb seed 0"
    ]  # fmt: skip


def test_rows_keeps_the_named_rows_with_their_teachers_and_feature_sources() -> None:
    dai = load_recipe("dai21_dense").only(["dai_flow_pose", "rgb"])
    assert [row.name for row in dai.rows] == ["rgb", "flow", "pose", "dai_flow_pose"]
    assert dai.prepare == load_recipe("dai21_dense").prepare
    demo = load_recipe("demo").only(["seg_student"])
    assert [row.name for row in demo.rows] == ["clip_rgb", "clip_flow", "seg_flow", "seg_student"]
    with pytest.raises(RecipeError, match=r"has no rows \['nope'\]; its rows: \['clip_rgb'"):
        load_recipe("demo").only(["nope"])


def test_rows_on_frames_pull_in_no_feature_preparation() -> None:
    """The demo's dense rows and `dai21_dense`'s frame rows train on the frames: no clip row
    trained to extract features from, no extraction, no pretraining pool."""
    demo = load_recipe("demo").only(["dense_student"])
    assert [row.name for row in demo.rows] == ["dense_flow", "dense_pose", "dense_student"]
    jobs = [job.name for job in TableRunner(demo, Path("unused")).jobs()]
    assert jobs == ["synthetic benchmark", "dense_flow seed 0", "dense_pose seed 0",
                    "dense_student seed 0"]  # fmt: skip
    frames = load_recipe("dai21_dense").only(["dai_frames"])
    jobs = [job.name for job in TableRunner(frames, Path("unused")).jobs()]
    assert jobs == ["synthetic benchmark", "flow_frames seed 0", "pose_frames seed 0",
                    "dai_frames seed 0", "dai_frames seed 1", "dai_frames seed 2"]  # fmt: skip


def test_an_install_without_the_configs_says_where_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-editable install has no configs/ beside the package: named, with the fix (it
    listed no recipes: "choose one of []")."""
    import lightning_modules.reproduce.recipe as recipe_module

    missing = tmp_path / "site-packages" / "configs"
    monkeypatch.setattr(recipe_module, "CONFIGS_ROOT", missing)
    monkeypatch.setattr(recipe_module, "RECIPES", missing / "experiments")
    with pytest.raises(RecipeError, match="ship in the source checkout") as error:
        load_recipe("demo")
    assert str(missing) in str(error.value) and "make install" in str(error.value)


def test_unknown_table_lists_the_known_ones() -> None:
    with pytest.raises(RecipeError, match="demo"):
        load_recipe("no_such_table")


def test_summary_uses_the_sample_standard_deviation() -> None:
    summary = summarise([0.5, 0.7, 0.6])
    assert summary["mean"] == pytest.approx(0.6)
    assert summary["std"] == pytest.approx(0.1)
    assert summarise([0.4])["std"] == 0.0


def test_markdown_puts_the_paper_beside_ours() -> None:
    row = {
        "row": "student", "label": "Student", "method": "KD", "inference_modalities": ["rgb"],
        "metrics": {"frame_mAP": summarise([0.3, 0.5]), "frame_mAP_all": summarise([0.2, 0.2])},
        "paper": {"charades": {"frame_mAP": 26.1}},
    }  # fmt: skip
    table = markdown({"title": "T", "data": "synthetic", "seeds": 2, "rows": [row]})
    line = table.strip().splitlines()[-1]
    assert line.startswith("| Student | KD | rgb | frame_mAP | 40.0 ± 14.1 | 26.1 |")
    single = {**row, "metrics": {"frame_mAP": summarise([0.3])}}
    one = markdown({"title": "T", "data": "synthetic", "seeds": 1, "rows": [single]})
    assert "±" not in one.splitlines()[-1] and "| frame_mAP | 30.0 |" in one  # one seed
    assert "paper: charades" in table


def test_plot_groups_rows_by_task_and_tells_baseline_student_and_teachers_apart(
    tmp_path: Path,
) -> None:
    from lightning_modules.reproduce.results import plot, role, task_groups

    def row(label: str, inference: list[str], values: list[float], teachers: str = "") -> dict:
        return {"label": label, "inference_modalities": inference, "method": "",
                "metrics": {"top1": summarise(values)}, "paper": {}, "row": label,
                "teachers": {"flow": teachers} if teachers else {}}  # fmt: skip

    rows = [
        row("Clips: RGB baseline", ["rgb"], [0.3, 0.35]), row("Clips: flow", ["flow"], [0.6]),
        row("Clips: student", ["rgb"], [0.4, 0.42], "Clips: flow"),
        row("Clips: RGB teacher, part of the data", ["rgb"], [0.28]),
        row("Dense: RGB baseline", ["rgb"], [0.4]),
        row("Dense: two-stream", ["rgb", "flow"], [0.6]),
        row("Dense: student", ["rgb"], [0.5], "Dense: two-stream"),
    ]  # fmt: skip
    groups = task_groups(rows)
    assert list(groups) == ["Clips", "Dense"] and [len(g) for g in groups.values()] == [4, 3]
    roles = [role(r) for g in groups.values() for r in g]
    # an RGB row is a student when it distils, else an RGB model of labels alone (a baseline)
    assert roles == ["baseline", "other", "student", "baseline", "baseline", "other", "student"]
    plot({"title": "T " * 80, "rows": rows}, tmp_path / "plot.png")  # a long title wraps
    assert (tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_smoke_writes_the_table_and_resumes(tmp_path: Path) -> None:
    out, published = tmp_path / "demo", tmp_path / "published"
    command = [str(CONSOLE_SCRIPT), "reproduce", "demo", "--smoke", "--out", str(out)]
    first = subprocess.run(
        [*command, "--publish", str(published)], capture_output=True, text=True, timeout=900
    )
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    provenance = results["provenance"]
    assert len(provenance["invocations"]) == 1 and provenance["wall_seconds"] > 0
    assert len(provenance["commit"]) == 40 and provenance["invocations"][0]["jobs_run"] == 15
    assert set(provenance["job_seconds"]) >= {"clip_rgb seed 0", "seg_student seed 0"}
    assert "Made by commit " + provenance["commit"][:7] in (out / "results.md").read_text()
    assert json.loads((published / "results.json").read_text()) == results
    for row in results["rows"]:  # what the notebooks and the claims test read, no checkpoint
        assert (published / "results" / row["row"] / "seed0.json").is_file()
        assert any((published / "runs" / f"{row['row']}-seed0" / "test" / "predictions").iterdir())
    assert not list(published.rglob("*.ckpt"))
    recipe = load_recipe("demo", smoke=True)
    assert results["table"] == "demo" and results["data"] == "synthetic"
    assert [row["row"] for row in results["rows"]] == [row.name for row in recipe.rows]
    for row in results["rows"]:
        assert set(row) == RESULT_KEYS
        for metric in row["metrics"].values():
            assert set(metric) == {"mean", "std", "values"} and len(metric["values"]) == 1
    main = {"clip": "top1", "dense": "frame_mAP", "seg": "average_mAP"}
    for row in results["rows"]:
        assert main[row["row"].split("_")[0]] in row["metrics"]
    assert (out / "results.png").stat().st_size > 1000
    assert "Dense: Augmented RGB student (Dai)" in (out / "results.md").read_text()
    assert "| row |" in first.stdout
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("seed*.json")}
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert "| row |" in second.stdout
    again = json.loads((out / "results.json").read_text())["provenance"]
    assert again["invocations"] == provenance["invocations"]  # a rerun that ran nothing


def test_radevski_table_has_the_authors_kd_only_student_beside_lambda_gt_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The authors train the student on the KD loss alone (lambda_GT = 0 by default)."""
    from tests.cli_helpers import print_config

    recipe = load_recipe("radevski_clips")
    rows = {row.name: row for row in recipe.rows}
    kd_only, with_gt = rows["student_uniform_kd_only"], rows["student_uniform"]
    assert kd_only.teachers == with_gt.teachers and kd_only.fit == with_gt.fit
    weights = []
    for row in (kd_only, with_gt):
        files = [recipe.trainer, *recipe.data, *row.fit]
        flags = [flag for path in files for flag in ("--config", str(path))]
        config = print_config(capsys, *flags, *recipe.args, *row.args)
        weights.append(config["model"]["init_args"]["task_weight"])
    assert weights == [0.0, 1.0]


def test_data_rows_that_do_not_fit_the_data_are_named_before_any_training(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--data` with features of other widths than the rows' models read: one error naming
    every row that does not fit and its fix, exit 2, nothing trained; fitting rows pass."""
    import numpy as np

    from lightning_modules.commands.reproduce import main
    from tests.data_helpers import with_random_features

    root = with_random_features(bench, tmp_path / "features")
    base = yaml.safe_load((RECIPES.parent / "data" / "synthetic_features.yaml").read_text())
    base["data"]["init_args"]["root"] = str(root)
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(base))
    runner = TableRunner(load_recipe("dai21_dense"), tmp_path / "fits", str(data))
    runner.preflight()  # the shipped rows read the widths with_random_features writes
    for path in (root / "features" / "rgb").glob("*.npy"):
        np.save(path, np.load(path)[:, :96])
    out = tmp_path / "out"
    assert main(["dai21_dense", "--data", str(data), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "before any training" in error and not (out / "runs").exists()
    reading_rgb = ["rgb", "two_stream", "hinton_kd", "dai_flow_pose"]
    for row in reading_rgb:
        assert f"row {row} (" in error, row
    assert "row flow (" not in error and "row pose (" not in error
    assert "the data's rgb features are 96 wide" in error and "Fix:" in error
