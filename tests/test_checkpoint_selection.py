"""No checkpoint is chosen on the test videos: a validation part of the training videos
(`val_fraction`) for benchmarks whose only other labelled split is the test split, the real
configs use it, and `fit` / `test --ckpt_path best` refuse validation == test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datamodules.sources import DataError, KeypointSource
from lightning_modules.commands import main
from tests.cli_helpers import BASE, CONFIGS, tiny, with_base
from tests.test_datamodule import make


def test_validation_part_is_drawn_from_training_and_left_out_of_it(bench: Path) -> None:
    whole = make(bench, modalities={"pose": KeypointSource()})
    training = {r.video_id for r in whole.subset_records("train")}
    split = make(
        bench,
        modalities={"pose": KeypointSource()},
        val_subset=None,
        val_fraction=0.25,
        held_out_fraction=0.25,
    )
    trained = {r.video_id for r in split.subset_records("train")}
    validated = {r.video_id for r in split.subset_records("val")}
    held_out = {r.video_id for r in split.subset_records("held_out")}
    assert validated and trained and held_out
    assert not (validated & trained) and not (validated & held_out) and not (held_out & trained)
    assert validated | trained | held_out == training
    assert split.role_name("val") == "training (validation part)"
    assert set(split.distinct_roles()) == {"train", "held_out", "val", "test"}
    again = make(bench, modalities={"pose": KeypointSource()}, val_subset=None, val_fraction=0.25)
    assert {r.video_id for r in again.subset_records("val")} == validated  # the hash decides
    with pytest.raises(DataError, match="val_subset: null"):
        make(bench, val_fraction=0.1)  # val_subset "validation" as well


@pytest.mark.parametrize("config", sorted((CONFIGS / "data" / "real").glob("*.yaml")), ids=str)
def test_real_configs_never_validate_on_their_test_subset(config: Path) -> None:
    args: dict = {}
    flags = with_base(config)  # an overlay (TSU cross-view) after its base
    for path in flags[1::2]:
        args.update(yaml.safe_load(Path(path).read_text())["data"]["init_args"])
    assert args["val_subset"] != args["test_subset"]
    assert args["val_subset"] is not None or args.get("val_fraction", 0) > 0


def test_fit_and_test_best_refuse_validation_on_the_test_subset(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    same = ["--data.init_args.val_subset=testing"]
    assert main(["fit", *BASE, *tiny(bench, runs), *same, "--run_name", "a"]) == 2
    assert "chosen on the test videos" in capsys.readouterr().err
    assert not (runs / "a").exists()
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "b"]) == 0
    capsys.readouterr()
    test = ["test", "--config", str(runs / "b/config.yaml"), *same]
    assert main([*test, "--ckpt_path", "best"]) == 2
    assert "--ckpt_path last" in capsys.readouterr().err
    assert main([*test, "--ckpt_path", "last"]) == 0
