"""A run's files survive faults: checkpoints and `run_meta.json` are written atomically beside
themselves, whatever the filesystem, and a damaged one is named with its fix on resume.

The cross-filesystem case is simulated: a rename between two folders fails with EXDEV (as
between `/tmp` and an NFS or Lustre run folder), so a writer that renames from elsewhere falls
back to copying, and every such copy is cut off half-way (a kill, a full disk).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from lightning_modules.commands import main
from lightning_modules.runs.checkpoint_io import RunCheckpointIO
from lightning_modules.runs.directory import RunDirError
from lightning_modules.runs.meta import read_meta, write_meta
from tests.cli_helpers import BASE, tiny


@pytest.fixture
def other_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """System temp folder on 'another filesystem': renames out of it fail with EXDEV, and the
    copies that replace them are cut off half-way."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    real_rename, real_replace = os.rename, os.replace

    def crosses(src: object, dst: object) -> bool:
        return Path(str(src)).resolve().parent != Path(str(dst)).resolve().parent

    def rename(src: object, dst: object, *args: object, **kwargs: object) -> None:
        if crosses(src, dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst, *args, **kwargs)

    def replace(src: object, dst: object, *args: object, **kwargs: object) -> None:
        if crosses(src, dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst, *args, **kwargs)

    def cut_copy(src: object, dst: object, *args: object, **kwargs: object) -> str:
        data = Path(str(src)).read_bytes()
        Path(str(dst)).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "copyfile", cut_copy)
    return system_tmp


def test_fit_checkpoints_are_whole_when_the_run_folder_is_on_another_filesystem(
    bench: Path, tmp_path: Path, other_filesystem: Path
) -> None:
    runs = tmp_path / "runs"
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 0
    for name in ("last", "best"):
        checkpoint = torch.load(runs / f"a/checkpoints/{name}.ckpt", weights_only=False)
        assert checkpoint["epoch"] == 0 and checkpoint["state_dict"]
    assert not [p for p in other_filesystem.rglob("*") if p.is_file()]  # no orphan in /tmp
    assert not list((runs / "a/checkpoints").glob(".*"))  # nor beside the checkpoints


def test_a_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = RunCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, path)
    (path.parent / ".last.ckpt.k3x_9q2z").write_bytes(b"x" * 100)  # a killed write's leftover

    def disk_full(payload: object, handle: object) -> None:
        handle.write(b"PK\x03\x04" + b"\x00" * 1000)  # part of a checkpoint, then no space
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match=r"no space left .* the previous last\.ckpt .* is kept"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_from_a_damaged_checkpoint_names_it_and_the_fix(
    bench: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 0
    last = runs / "a/checkpoints/last.ckpt"
    last.write_bytes(b"" if damage == "empty" else last.read_bytes()[:5000])
    capsys.readouterr()
    resume = ["--config", str(runs / "a/config.yaml"), "--ckpt_path", "last"]
    assert main(["fit", *resume, "--trainer.max_epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{last} is damaged" in err and "Fix: resume from another checkpoint" in err


def test_run_meta_is_replaced_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run_meta.json"
    write_meta(path, {"subcommand": "fit", "started": "first"})
    real_dumps = json.dumps

    def full_disk(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the new text cannot reach the disk
    with pytest.raises(OSError):
        write_meta(path, {"subcommand": "fit", "started": "second"})
    monkeypatch.undo()
    assert json.dumps is real_dumps
    assert read_meta(path)["started"] == "first"
    assert list(tmp_path.iterdir()) == [path]
    write_meta(path, {"subcommand": "test", "started": "third"})
    assert [m["started"] for m in read_meta(path)["history"]] == ["first"]
    path.write_text('{"run_name": "a", "hist')  # cut by an older version
    with pytest.raises(RunDirError, match=r"run_meta\.json is damaged .* Fix: move it away"):
        read_meta(path)


def test_resume_refuses_changed_data_and_names_it(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run_meta.json recorded the data's hashes: a resume over changed annotations stops with
    what changed (or goes on with a warning when asked)."""
    from tests.data_helpers import copy_benchmark

    root = copy_benchmark(bench, tmp_path / "bench")
    runs = tmp_path / "runs"
    assert main(["fit", *BASE, *tiny(root, runs), "--run_name", "a"]) == 0
    annotations = root / "annotations" / "activitynet.json"
    annotations.write_text(json.dumps(json.loads(annotations.read_text()), indent=4))
    capsys.readouterr()
    resume = ["--config", str(runs / "a/config.yaml"), "--ckpt_path", "last"]
    assert main(["fit", *resume, "--trainer.max_epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "data file annotations/activitynet.json" in err and "--on_changed_inputs warn" in err
    with pytest.warns(UserWarning, match="changed inputs"):
        status = main(["fit", *resume, "--trainer.max_epochs", "2", "--on_changed_inputs=warn"])
    assert status == 0


def test_a_run_folder_in_use_is_refused(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two fits started with one --run_name would write one folder (config of one, checkpoints
    of the other): the second stops, naming the holder, and nothing of it is written."""
    import fcntl

    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    with open(runs / "a" / ".lock", "a+") as other:  # the first fit, still running
        other.write("crossdistill pid 4242 on node7\n")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX)
        assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 2
        assert "in use by crossdistill pid 4242 on node7" in capsys.readouterr().err
        assert sorted(p.name for p in (runs / "a").iterdir()) == [".lock"]
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 0  # once it ended


def test_a_full_disk_keeps_the_checkpoint_and_its_export_together(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Before: torch's "[enforce fail ...]" with no word of disk space, and the new checkpoint
    beside an export one epoch older. Now: the message says the disk is full, and last.ckpt and
    last.student.pt stay the previous pair."""
    import shutil

    runs = tmp_path / "runs"
    assert main(["fit", *BASE, *tiny(bench, runs), "--run_name", "a"]) == 0
    folder = runs / "a" / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert "last.student.pt" in before
    real_save = torch.save

    def full_for_checkpoints(payload: object, handle: object, *args: object, **kw: object):
        if isinstance(payload, dict) and "optimizer_states" in payload:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64")
        return real_save(payload, handle, *args, **kw)

    monkeypatch.setattr(torch, "save", full_for_checkpoints)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 0))
    capsys.readouterr()
    resume = ["--config", str(runs / "a/config.yaml"), "--ckpt_path", "last"]
    assert main(["fit", *resume, "--trainer.max_epochs", "2"]) == 1
    assert "no space left on the device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_only_leftovers_of_killed_writes_are_removed(tmp_path: Path) -> None:
    """A hidden file of the user's that shares the checkpoint's name is not an orphan."""
    path = tmp_path / "model.pt"
    (tmp_path / ".model.pt.signature").write_text("mine")
    RunCheckpointIO().save_checkpoint({"epoch": 1}, path)
    assert (tmp_path / ".model.pt.signature").read_text() == "mine"


def test_run_meta_names_files_by_the_digest_of_the_caches_and_features(tmp_path: Path) -> None:
    """One hash in the project: run_meta.json's teacher digest is the one the teacher cache and
    extract-features record for the same checkpoint, so they can be compared. A record of an
    earlier version (sha256) is compared by path only, not reported as changed content."""
    from datamodules.sources.integrity import DIGEST, file_digest
    from lightning_modules.runs.meta import changed_inputs, teacher_hashes

    checkpoint = tmp_path / "flow.ckpt"
    checkpoint.write_bytes(b"weights")
    recorded = teacher_hashes({"flow": str(checkpoint)})["flow"]
    assert recorded == {"path": str(checkpoint), DIGEST: file_digest(checkpoint)}
    source = Path(__file__).parents[1] / "lightning_modules"
    assert 'f"checkpoint_{DIGEST}"' in (source / "commands/extract_features.py").read_text()
    assert 'f"checkpoint_{DIGEST}"' in (source / "teachers/cache.py").read_text()
    now = {"teachers": {"flow": recorded}, "data": {"root": "/d", DIGEST: {"a.json": "1"}}}
    legacy = {"teachers": {"flow": {"path": str(checkpoint), "sha256": "0" * 64}},
              "data": {"root": "/d", "files": {"a.json": "2"}}}  # fmt: skip
    assert changed_inputs(legacy, now) == []
    moved = {"teachers": {"flow": {"path": "/elsewhere.ckpt", "sha256": "0" * 64}}}
    assert changed_inputs(moved, now) and "flow" in changed_inputs(moved, now)[0]
    other = {**now, "data": {"root": "/d", DIGEST: {"a.json": "3"}}}
    assert changed_inputs(other, now) == ["data file a.json: its content changed (or it was "
                                          "added or removed)"]  # fmt: skip
