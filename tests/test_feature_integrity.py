"""Feature files against the meta.json that `extract-features` writes: a truncated or altered
file is found before training, by name, with the command that rebuilds the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamodules.datamodule import MultimodalDataModule
from datamodules.sources import DataError, FeatureSource
from lightning_modules.commands.extract_features import main
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark, with_random_features
from tests.test_teacher import cli

CONFIGS = REPO_ROOT / "configs"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A feature benchmark copy, and features extracted from it by a one-step flow model."""
    tmp = tmp_path_factory.mktemp("integrity")
    bench = with_random_features(tiny_benchmark(tmp_path_factory), tmp / "bench")
    data = ["--config", str(CONFIGS / "data" / "synthetic_features.yaml"),
            f"--data.init_args.root={bench}", "--data.init_args.load=[flow]"]  # fmt: skip
    teacher = cli([
        *data, "--config", str(CONFIGS / "teacher" / "dense_features_flow.yaml"),
        f"--trainer.default_root_dir={tmp / 'runs'}", "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
    ])  # fmt: skip
    teacher.trainer.fit(teacher.model, teacher.datamodule)
    checkpoint = tmp / "flow.ckpt"
    teacher.trainer.save_checkpoint(checkpoint)
    out = tmp / "extracted"
    assert main([*data, "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return bench, out


def datamodule(bench: Path, folder: Path, verify_digest: bool = True) -> MultimodalDataModule:
    source = FeatureSource(path=f"{folder}/{{video_id}}.npy", verify_digest=verify_digest)
    return MultimodalDataModule(
        bench, {"flow": source}, window_seconds=12.8, window_steps=128, augment=None,
        num_workers=0, val_subset=None,
    )  # fmt: skip


def copy_of(folder: Path, destination: Path) -> Path:
    destination.mkdir()
    for path in folder.iterdir():
        (destination / path.name).write_bytes(path.read_bytes())
    return destination


def test_meta_lists_every_file_with_size_digest_and_the_command(
    extracted: tuple[Path, Path],
) -> None:
    bench, out = extracted
    meta = json.loads((out / "meta.json").read_text())
    files = sorted(p.stem for p in out.glob("*.npy"))
    assert sorted(meta["files"]) == files and meta["videos"] == len(files)
    for video_id, entry in meta["files"].items():
        assert entry["bytes"] == (out / f"{video_id}.npy").stat().st_size
        assert len(entry["blake2b"]) == 64
    assert meta["command"].startswith("crossdistill extract-features --config ")
    assert f"--out {out}" in meta["command"]
    assert not list(out.glob(".*"))  # no temporary files left
    dm = datamodule(bench, out)
    dm.setup("fit")  # intact files pass


def test_truncated_feature_file_stops_setup_with_the_extract_command(
    extracted: tuple[Path, Path], tmp_path: Path
) -> None:
    bench, out = extracted
    folder = copy_of(out, tmp_path / "features")
    dm = datamodule(bench, folder)
    video_id = dm.subset_records("train")[0].video_id
    victim = folder / f"{video_id}.npy"
    victim.write_bytes(victim.read_bytes()[:-512])
    with pytest.raises(DataError, match="truncated") as error:
        dm.setup("fit")
    message = str(error.value)
    assert str(victim) in message and "crossdistill extract-features --config" in message


def test_altered_feature_file_is_found_by_its_digest(
    extracted: tuple[Path, Path], tmp_path: Path
) -> None:
    bench, out = extracted
    folder = copy_of(out, tmp_path / "features")
    dm = datamodule(bench, folder)
    record = dm.subset_records("train")[0]
    victim = folder / f"{record.video_id}.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, one float changed
    victim.write_bytes(bytes(data))
    problems = dm.modalities["flow"].check(record)
    assert len(problems) == 1 and "digest" in problems[0].what
    assert "crossdistill extract-features" in problems[0].fix
    # verify_digest: false trades this check for speed; the size is still compared
    unchecked = datamodule(bench, folder, verify_digest=False)
    assert unchecked.modalities["flow"].check(record) == []


def test_features_without_meta_get_the_usual_checks_only(
    extracted: tuple[Path, Path], tmp_path: Path
) -> None:
    bench, out = extracted
    folder = copy_of(out, tmp_path / "features")
    (folder / "meta.json").unlink()
    dm = datamodule(bench, folder)
    dm.setup("fit")


def test_a_killed_extraction_leaves_the_previous_folder_whole(
    extracted: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a killed run over an existing folder deleted meta.json and replaced files one by
    one: the folder mixed two checkpoints' features. Now it is built beside and swapped in."""
    import shlex
    import stat

    import lightning_modules.feature_extraction as extraction

    _, out = extracted
    folder = copy_of(out, tmp_path / "features")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    command = shlex.split(json.loads((folder / "meta.json").read_text())["command"])[2:]
    argv = [*command[: command.index("--out")], "--out", str(folder)]
    written = []
    real_save = extraction.save_npy_atomic

    def killed_after_two(path: Path, array):
        if len(written) == 2:
            raise KeyboardInterrupt  # the job was killed
        written.append(path)
        return real_save(path, array)

    monkeypatch.setattr(extraction, "save_npy_atomic", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.undo()
    assert main(argv) == 0  # over the earlier extraction and the killed run's leftovers
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)
    assert not list(tmp_path.glob(".features.*"))
    for path in folder.iterdir():
        assert path.stat().st_mode & stat.S_IRGRP  # readable by the group

    (folder / "thesis.tex").write_text("mine")
    assert main(argv) == 1
    assert (folder / "thesis.tex").read_text() == "mine"
