"""The frame store (`frame_store:` of video sources): reads equal to the decoder's, built once,
keyed by the video's bytes and the settings, written atomically, and errors that name the file
and the fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.sources.frame_store as frame_store
from datamodules.annotations import VideoRecord
from datamodules.grid import TimeGrid
from datamodules.optical_flow import quantize_flow
from datamodules.sources import DataError, FlowSource, VideoSource
from datamodules.sources.frame_store import FrameStoreError, remove_leftovers
from datamodules.video_io import write_video
from tests.data_helpers import INDEX_VIDEO_GRIDS, read_indices, write_index_video

FPS = 10.0
FRAMES = 120


def record(duration: float = FRAMES / FPS, video_id: str = "idx") -> VideoRecord:
    return VideoRecord(video_id, "training", duration, fps=FPS)


def bound(source, root: Path, name: str = "m"):
    source.bind(name, root, None)
    return source


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index-coded RGB video (64x48: the square is cut) and a flow video (40x32) whose x
    planes vary across the frame, so that resizing changes values."""
    folder = tmp_path_factory.mktemp("store_videos")
    write_index_video(folder / "videos" / "idx.mp4", FRAMES, FPS)
    flow = np.zeros((40, 32, 40, 2), dtype=np.float32)
    flow[..., 0] = 3.0 + 0.1 * np.arange(40)[:, None, None] + np.arange(40)[None, None, :] / 8
    flow[..., 1] = -2.0 + np.arange(32)[None, :, None] / 16
    write_video(folder / "flow" / "v.mp4", quantize_flow(flow, 10.0), FPS, lossless_rgb=True)
    return folder


def rgb(root: Path, store: Path | None, size: int = 24, backend: str = "decord") -> VideoSource:
    option = str(store) if store is not None else False
    source = VideoSource("videos/{video_id}.mp4", size=size, backend=backend, frame_store=option)
    return bound(source, root)


def flow(root: Path, store: Path | None, size: int = 16) -> FlowSource:
    option = str(store) if store is not None else False
    return bound(FlowSource("flow/{video_id}.mp4", bound=10.0, size=size, frame_store=option), root)


def entries(store: Path) -> list[Path]:
    return sorted(store.glob("v1/*/*.npy"))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("size", [24, 48])
def test_rgb_from_the_store_equals_the_decoded_frames(
    videos: Path, tmp_path: Path, backend: str, size: int
) -> None:
    decoded = rgb(videos, None, size, backend)
    stored = rgb(videos, tmp_path / "store", size, backend)
    for grid in INDEX_VIDEO_GRIDS:
        expected = decoded.load(record(), grid)["m"]
        assert torch.equal(stored.load(record(), grid)["m"], expected)
    valid = INDEX_VIDEO_GRIDS[0].valid(FRAMES / FPS)
    got = read_indices(stored.load(record(), INDEX_VIDEO_GRIDS[0])["m"])
    np.testing.assert_array_equal(got[valid], np.arange(32))
    [entry] = entries(tmp_path / "store")
    assert np.load(entry, mmap_mode="r").shape == (FRAMES, size, size, 3)
    assert f"-rgb-{size}px-{backend}.npy" in entry.name


@pytest.mark.parametrize("size", [16, 32])
def test_flow_from_the_store_equals_the_decoded_flow(
    videos: Path, tmp_path: Path, size: int
) -> None:
    decoded, stored = flow(videos, None, size), flow(videos, tmp_path / "store", size)
    rec = record(4.0, "v")
    for grid in (TimeGrid(0.0, 4.0, 40), TimeGrid(1.05, 2.05, 20), TimeGrid(3.5, 4.5, 10)):
        expected = decoded.load(rec, grid)["m"]
        assert expected.shape == (2, grid.steps, size, size)
        assert torch.equal(stored.load(rec, grid)["m"], expected)
    # in output pixels / bound: the y plane of the centre square scaled by size / 32
    y = decoded.load(rec, TimeGrid(0.0, 0.1, 1))["m"][1, 0].numpy()
    assert abs(float(y.mean()) - (-2.0 + 15.5 / 16) * size / 32 / 10.0) < 0.02
    [entry] = entries(tmp_path / "store")
    assert entry.name.endswith(f"-xy-{size}px-decord.npy")
    assert np.load(entry, mmap_mode="r").shape == (40, size, size, 2)


def test_the_store_is_built_once(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    real_open = frame_store.open_reader
    monkeypatch.setattr(
        frame_store, "open_reader", lambda path, *a: opened.append(path) or real_open(path, *a)
    )
    grid = TimeGrid(2.0, 3.6, 16)
    first = rgb(videos, tmp_path / "store").load(record(), grid)["m"]
    assert len(opened) == 1  # the first read decodes the video, whole
    [entry] = entries(tmp_path / "store")
    written = entry.stat().st_mtime_ns
    again = rgb(videos, tmp_path / "store")  # another source, as in another worker or run
    assert torch.equal(again.load(record(), grid)["m"], first)
    again.load(record(), TimeGrid(9.0, 10.6, 16))
    assert len(opened) == 1 and entry.stat().st_mtime_ns == written
    other_size = rgb(videos, tmp_path / "store", size=16)
    other_size.load(record(), grid)
    assert len(opened) == 2 and len(entries(tmp_path / "store")) == 2  # another key


def test_an_edited_video_never_reads_its_old_frames(videos: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(videos, root)
    grid = TimeGrid(0.0, 3.2, 32)
    before = read_indices(rgb(root, tmp_path / "store", size=48).load(record(), grid)["m"])
    np.testing.assert_array_equal(before, np.arange(32))
    video = root / "videos" / "idx.mp4"
    write_index_video(tmp_path / "other.mp4", FRAMES, FPS, height=32)  # same length, other frames
    shutil.copyfile(tmp_path / "other.mp4", video)
    os.utime(video, ns=(time.time_ns(), time.time_ns() + 10**9))
    after = rgb(root, tmp_path / "store", size=48).load(record(), grid)["m"]
    assert torch.equal(after, rgb(root, None, size=48).load(record(), grid)["m"])
    assert len(entries(tmp_path / "store")) == 2  # keyed by the new digest


def test_damaged_entries_are_rebuilt(
    videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grid = TimeGrid(4.0, 10.4, 32)
    expected = rgb(videos, None).load(record(), grid)["m"]
    rgb(videos, tmp_path / "store").load(record(), grid)
    [entry] = entries(tmp_path / "store")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # truncated
    assert torch.equal(rgb(videos, tmp_path / "store").load(record(), grid)["m"], expected)
    assert "truncated" in caplog.text and entry.stat().st_size == len(data)
    entry.with_suffix(".json").unlink()  # a writer killed between the frames and the record
    assert torch.equal(rgb(videos, tmp_path / "store").load(record(), grid)["m"], expected)
    assert "no completion record" in caplog.text and entry.with_suffix(".json").is_file()


def test_a_store_that_cannot_be_written_names_the_folder_and_the_fix(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    source = rgb(videos, blocker / "store")
    [problem] = source.check(record())  # found by the data check, in the main process
    assert "cannot be written" in problem.what and str(blocker / "store") in problem.what
    assert "modalities.m.init_args.frame_store" in problem.fix
    with pytest.raises(FrameStoreError, match=r"a_file/store.*Fix: .*frame_store"):
        source.load(record(), TimeGrid(0.0, 1.6, 16))
    # a complete store that cannot be written is read as it is; a damaged one is an error
    store = tmp_path / "store"
    grid = TimeGrid(0.0, 1.6, 16)
    expected = rgb(videos, store).load(record(), grid)["m"]
    monkeypatch.setattr(frame_store.FrameStore, "writable", lambda self: False)
    read_only = rgb(videos, store)
    assert read_only.check(record()) == []
    assert torch.equal(read_only.load(record(), grid)["m"], expected)
    [entry] = entries(store)
    entry.write_bytes(entry.read_bytes()[:1000])
    with pytest.raises(FrameStoreError, match=rf"{entry.name}.*truncated.*Fix: "):
        rgb(videos, store).load(record(), grid)


def test_a_killed_writers_file_is_ignored_and_cleaned(videos: Path, tmp_path: Path) -> None:
    source = rgb(videos, tmp_path / "store")
    entry = source.store.entry(source.store.digest(videos / "videos" / "idx.mp4"))
    entry.parent.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    dead = entry.parent / f".{entry.name}.{host}.{gone.stdout.strip()}-1.part"
    dead.write_bytes(b"\x93NUMPY half of a file")
    old = entry.parent / f".{entry.name}.elsewhere.7-1.part"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    recent = entry.parent / f".{entry.with_suffix('.json').name}.elsewhere.8-1.part"
    recent.write_bytes(b"x")  # perhaps still being written on another machine
    assert source.store.read(entry) == (None, None)  # a temporary file is no entry
    frames = source.load(record(), TimeGrid(0.0, 1.6, 16))["m"]
    np.testing.assert_array_equal(read_indices(frames), np.arange(16))
    assert not dead.exists() and not old.exists() and recent.exists()
    assert remove_leftovers(entry.parent) == []


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (OSError("No space left on device"), r"cannot write the frame store .*No space left"),
        (
            RuntimeError("[h264] error while decoding MB 3 2"),
            r"idx\.mp4: cannot be decoded whole .*after frame 8.*Fix: re-encode",
        ),
    ],
    ids=["full-disk", "damaged-video"],
)
def test_a_writer_that_fails_leaves_no_entry_and_names_the_cause(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, message: str
) -> None:
    def failing(reader, chunk=64):
        yield reader.frames(np.arange(8))
        raise failure

    monkeypatch.setattr(frame_store, "in_order", failing)
    with pytest.raises(FrameStoreError, match=message):
        rgb(videos, tmp_path / "store").load(record(), TimeGrid(0.0, 1.6, 16))
    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert written == [*(tmp_path / "store" / "digests").iterdir()]  # no entry, no part file


def test_concurrent_writers_of_one_video_agree(videos: Path, tmp_path: Path) -> None:
    """Workers reading one video at once each build it; the entry ends complete and whole."""
    sources = [rgb(videos, tmp_path / "store") for _ in range(3)]
    grid = TimeGrid(7.0, 8.6, 16)
    with ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(lambda s: s.load(record(), grid)["m"], sources))
    assert all(torch.equal(t, loaded[0]) for t in loaded)
    [entry] = entries(tmp_path / "store")
    assert rgb(videos, tmp_path / "store").store.read(entry)[0] is not None
    assert not list((tmp_path / "store").rglob(".*.part"))


def test_frame_folders_and_arrays_refuse_a_store(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"frame_store keeps decoded video files.*Fix: remove"):
        bound(VideoSource("frames/{video_id}", frame_store=True), tmp_path)
    with pytest.raises(DataError, match=r"modalities\.flow\.init_args\.frame_store"):
        FlowSource("flow/{video_id}.npy", bound=10.0, frame_store=True).bind("flow", tmp_path, None)


def test_true_is_a_folder_beside_the_data_root(videos: Path) -> None:
    source = VideoSource("videos/{video_id}.mp4", frame_store=True)
    bound(source, videos)
    assert source.store.folder == videos.resolve().parent / f"{videos.name}.frame_store"
    assert VideoSource("videos/{video_id}.mp4").store is None


CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "data" / "synthetic.yaml")


def store_flags(bench: Path, store: Path | bool) -> list[str]:
    """synthetic.yaml on the tiny benchmark at 32x32, with `store` for rgb and flow."""
    option = str(store).lower() if isinstance(store, bool) else str(store)
    return [
        "--config", CONFIG, f"--data.init_args.root={bench}",
        *(f"--data.init_args.modalities.{m}.init_args.{key}={value}"
          for m in ("rgb", "flow") for key, value in (("size", 32), ("frame_store", option))),
    ]  # fmt: skip


def test_the_command_fills_the_store_ahead_of_training(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    from lightning_modules.commands import main

    store = tmp_path / "store"
    assert main(["frame-store", *store_flags(bench, store)]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[")]
    videos = len(list((bench / "videos").glob("*.mp4")))
    assert len(progress) == 2 * videos and len(entries(store)) == 2 * videos
    assert re.fullmatch(
        rf"\[1/{2 * videos}\] rgb \S+: built, \d+ frames \(\d+\.\d s\)", progress[0]
    )
    assert f"frame-store: flow: built {videos}" in out and "every video stored" in out
    assert main(["frame-store", *store_flags(bench, store)]) == 0
    assert f"frame-store: rgb: kept {videos}" in capsys.readouterr().out


def test_the_command_explains_what_it_cannot_do(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lightning_modules.commands import main

    assert main(["frame-store", *store_flags(bench, False)]) == 1
    assert "no modality of this config sets frame_store. Fix:" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["frame-store", *store_flags(bench, tmp_path / "a_file" / "store")]) == 1
    err = capsys.readouterr().err
    assert "could not be stored" in err and "a_file/store" in err and "Fix:" in err
    assert "Traceback" not in err
    skip = "--data.init_args.missing=skip"
    assert main(["frame-store", *store_flags(bench, tmp_path / "a_file" / "store"), skip]) == 1
    root = tmp_path / "bench"
    shutil.copytree(bench, root)
    victim = next((root / "flow").glob("*.mp4"))
    victim.unlink()
    args = ["frame-store", *store_flags(root, tmp_path / "store")]
    assert main(args) == 1
    assert f"{victim}: file not found. Fix: restore it" in capsys.readouterr().err
    assert main([*args, skip]) == 0  # training leaves the video out
    assert "training leaves them out" in capsys.readouterr().err


def test_workers_building_the_store_give_the_decoded_batches(bench: Path, tmp_path: Path) -> None:
    """Two DataLoader workers build the store on first use (maybe one video at once): the
    validation batches equal those decoded without a store, and a second pass reads the store."""
    from datamodules.datamodule import MultimodalDataModule

    def batches(store: Path | None, workers: int) -> list[dict]:
        option = str(store) if store is not None else False
        dm = MultimodalDataModule(
            bench,
            {
                "rgb": VideoSource(size=32, frame_store=option),
                "flow": FlowSource(size=16, frame_store=option),
            },
            window_seconds=3.2, window_steps=32, batch_size=2, num_workers=workers,
        )  # fmt: skip
        dm.setup("validate")
        return list(dm.val_dataloader())

    expected = batches(None, 0)
    for _ in range(2):
        got = batches(tmp_path / "store", 2)
        assert len(got) == len(expected)
        for mine, theirs in zip(got, expected, strict=True):
            for name in ("rgb", "flow"):
                assert torch.equal(mine["inputs"][name], theirs["inputs"][name])
    assert not list((tmp_path / "store").rglob(".*.part"))
