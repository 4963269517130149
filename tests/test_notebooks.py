"""The paper-table notebooks (`experiments/*.ipynb`): stored without outputs, parametrised by
`CROSSDISTILL_SMOKE`, and run top to bottom in smoke mode (their table trained on the tiny
benchmark, the results checked against the `results.json` schema, the plots written).

The smoke runs also exercise the configs the three recipes use (every row trains and tests):
`configs/experiments/{dai21_dense,lee23_segments,radevski_clips}.yaml` and the configs they
compose, and `experiments/notebook_helpers.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from lightning_modules.reproduce.recipe import load_recipe
from lightning_modules.reproduce.results import main_metric
from tests.conftest import REPO_ROOT
from tests.test_reproduce import RESULT_KEYS

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TABLE_KEYS = {"table", "title", "data", "seeds", "rows", "provenance"}

# notebook -> (its table, the plots it saves under OUT/plots, a derived file under OUT/derived)
NOTEBOOKS = {
    "dai21_augmented_rgb": (
        "dai21_dense",
        ["class_ap", "timeline", "losses", "baselines", "frames"],
        "late_fusion-rgb+flow-seed0.npz",
    ),
    "lee23_decomposed": (
        "lee23_segments",
        ["tiou", "class_ap", "timeline", "ablations", "frames"],
        None,
    ),
    "radevski_multimodal_teachers": (
        "radevski_clips",
        ["class_ap", "reliability", "clip_confidence", "weighting"],
        "ensemble-per_sample-seed0.json",
    ),
}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(EXPERIMENTS / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_takes_its_parameters_from_the_environment(name: str) -> None:
    first = next(cell for cell in _read(name).cells if cell.cell_type == "code").source
    assert 'os.environ.get("CROSSDISTILL_SMOKE", "0") == "1"' in first
    assert 'os.environ.get("CROSSDISTILL_RERUN", "0") == "1"' in first
    assert f'os.environ.get("CROSSDISTILL_TABLE", "{NOTEBOOKS[name][0]}")' in first
    for parameter in ("DATA", "ROWS", "SUBSET", "OUT"):
        assert f'os.environ.get("CROSSDISTILL_{parameter}"' in first, parameter


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_stored_with_the_outputs_of_its_published_table_or_clean(name: str) -> None:
    """A notebook whose table is published (`experiments/results/<table>/`) is stored run top
    to bottom on it: no error, its table as published, every plot; the others without outputs."""
    table, plots, _ = NOTEBOOKS[name]
    code = [cell for cell in _read(name).cells if cell.cell_type == "code"]
    published = EXPERIMENTS / "results" / table / "results.md"
    if not published.is_file():
        assert all(not cell.outputs and cell.execution_count is None for cell in code)
        return
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = "\n".join(str(output.get("data", {}).get("text/markdown", "")) for output in outputs)
    assert published.read_text().strip() in shown
    assert f"read from experiments/results/{table} " in "".join(o.get("text", "") for o in outputs)
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= len(plots)


def _check_results(
    results: dict, table: str, data: str = "synthetic", rows: list[str] | None = None
) -> None:
    """`results.json` as `lightning_modules/reproduce/results.py` describes it."""
    recipe = load_recipe(table, smoke=True)
    if rows is not None:
        recipe = recipe.only(rows)
    assert set(results) == TABLE_KEYS
    assert results["table"] == table and results["data"] == data
    assert results["seeds"] == recipe.seeds == 1
    assert [row["row"] for row in results["rows"]] == [row.name for row in recipe.rows]
    for row, spec in zip(results["rows"], recipe.rows, strict=True):
        assert set(row) == RESULT_KEYS
        assert row["label"] == spec.label and row["inference_modalities"] == list(spec.inference)
        assert row["paper"] == spec.paper
        assert row["metrics"] and main_metric(row) in row["metrics"]
        for summary in row["metrics"].values():
            assert set(summary) == {"mean", "std", "values"}
            assert len(summary["values"]) == 1 and summary["std"] == 0.0
            assert summary["mean"] == pytest.approx(summary["values"][0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_its_table_in_smoke_mode(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    table, plots, derived = NOTEBOOKS[name]
    out = tmp_path / "out"
    monkeypatch.setenv("CROSSDISTILL_SMOKE", "1")
    monkeypatch.setenv("CROSSDISTILL_OUT", str(out))
    # one thread per process: on a shared 2-core machine, torch's 2 threads spin against
    # each other and every other job (several times slower)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = _read(name)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    _check_results(json.loads((out / "results.json").read_text()), table)
    for plot in plots:
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    if derived is not None:
        assert (out / "derived" / derived).is_file()
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= len(plots)
    assert not (tmp_path / "outputs").exists()  # everything went to CROSSDISTILL_OUT


@pytest.mark.slow
def test_notebook_takes_its_data_rows_and_subset_as_parameters(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dai et al. notebook on a data config of one's own features (`reproduce --data`), a
    few rows and the data's own test subset: the table, the late fusion and the plots of the
    rows it ran, and a note for the rows it did not."""
    import yaml
    from nbclient import NotebookClient

    from tests.data_helpers import with_random_features

    root = with_random_features(bench, tmp_path / "features")
    config = yaml.safe_load((REPO_ROOT / "configs/data/synthetic_features.yaml").read_text())
    config["data"]["init_args"]["root"] = str(root)
    data = tmp_path / "features.yaml"
    data.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    environment = {
        "SMOKE": "1", "OUT": str(out), "DATA": str(data), "ROWS": "rgb,flow,dai_flow_pose",
        "SUBSET": "testing",
    }  # fmt: skip
    for key, value in environment.items():
        monkeypatch.setenv(f"CROSSDISTILL_{key}", value)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = _read("dai21_augmented_rgb")
    NotebookClient(notebook, timeout=900, kernel_name="python3").execute()

    rows = ["rgb", "flow", "pose", "dai_flow_pose"]  # pose: a teacher of dai_flow_pose
    _check_results(json.loads((out / "results.json").read_text()), "dai21_dense", str(data), rows)
    for plot in ("class_ap", "timeline", "losses", "baselines"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    assert not (out / "plots" / "frames.png").exists()  # no row on the frames ran
    assert (out / "derived" / "late_fusion-rgb+flow-seed0.npz").is_file()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "not in this table, left out: rgb_frames" in printed
