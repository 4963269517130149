"""Reproducible runs: the same config and seed give the same metrics and weights on CPU, and a
run's recorded `config.yaml` reruns it (under a new run name) to the same weights; the configs
turn deterministic algorithms on."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.commands import main
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark

CONFIGS = REPO_ROOT / "configs"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_benchmark(tmp_path_factory)


@pytest.fixture(autouse=True)
def nondeterministic_afterwards():
    """`trainer.deterministic` switches torch's global flag on; leave it as it was."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def smoke(config: str, bench: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(CONFIGS / "smoke" / config), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={runs}",
        "--trainer.max_epochs=1", "--trainer.enable_model_summary=false", *extra,
    ]  # fmt: skip


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["state_dict"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [{k: v for k, v in row.items()} for row in csv.DictReader(handle)]


def assert_same_run(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert metrics(a) == metrics(b)
    assert any(row["val/frame_mAP"] for row in metrics(a))


def test_configs_fix_the_seed_and_ask_for_deterministic_algorithms() -> None:
    for path in ("trainer/cpu.yaml", "smoke/teacher.yaml", "smoke/distill.yaml"):
        config = yaml.safe_load((CONFIGS / path).read_text())
        assert isinstance(config["seed_everything"], int)
        assert config["trainer"]["deterministic"] is True


@pytest.mark.slow
def test_same_seed_same_weights_and_a_rerun_from_config_yaml(bench: Path, tmp_path: Path) -> None:
    """Teacher: run `a`, then `fit --config a/config.yaml --run_name b`; then a distilled student
    from `a` as its flow teacher, twice the same way."""
    runs = tmp_path / "runs"
    assert main(smoke("teacher.yaml", bench, runs, "--run_name=a")) == 0
    recorded = yaml.safe_load((runs / "a/config.yaml").read_text())
    assert recorded["seed_everything"] == 0 and recorded["trainer"]["deterministic"] is True
    assert main(["fit", "--config", str(runs / "a/config.yaml"), "--run_name=b"]) == 0
    assert_same_run(runs / "a", runs / "b")

    teacher = f"--model.init_args.teachers.flow={runs / 'a/checkpoints/last.ckpt'}"
    assert main(smoke("distill.yaml", bench, runs, teacher, "--run_name=s1")) == 0
    assert main(["fit", "--config", str(runs / "s1/config.yaml"), "--run_name=s2"]) == 0
    assert_same_run(runs / "s1", runs / "s2")


@pytest.mark.slow
def test_another_seed_gives_other_weights(bench: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    limits = ["--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    assert main(smoke("teacher.yaml", bench, runs, *limits, "--run_name=a")) == 0
    assert (
        main(smoke("teacher.yaml", bench, runs, *limits, "--run_name=b", "--seed_everything=1"))
        == 0
    )
    assert main(smoke("teacher.yaml", bench, runs, *limits, "--run_name=c")) == 0
    a, b, c = weights(runs / "a"), weights(runs / "b"), weights(runs / "c")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)
