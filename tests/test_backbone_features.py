"""`crossdistill extract-features --backbone`: a torchvision network with a local weights file,
I3D-style snippets read back by a FeatureSource on the right grid, flow through the 2-channel
stem, clear errors for wrong flags; and `(T, 1, 1, D)` feature files (PDAN's layout)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models.video as video_models

from datamodules.grid import TimeGrid
from lightning_modules.commands import data_check, extract_features, main
from lightning_modules.models.torchvision_video import TorchvisionVideoEncoder
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark

CONFIGS = REPO_ROOT / "configs"
WINDOW, STRIDE = 8, 24  # few snippets per video: the test stays fast on a CPU


def weights_file(folder: Path, arch: str = "r3d_18") -> Path:
    """Random weights of `arch` saved as a user saves torchvision's published ones."""
    path = folder / f"{arch}_random.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save(getattr(video_models, arch)().state_dict(), path)
    return path


def data(bench: Path, modality: str) -> list[str]:
    return [
        "--config", str(CONFIGS / "data" / "synthetic.yaml"), f"--data.init_args.root={bench}",
        f"--data.init_args.load=[{modality}]", "--data.init_args.num_workers=0",
        f"--data.init_args.modalities.{modality}.init_args.size=16",
    ]  # fmt: skip


def features_data(bench: Path, out: Path, **init_args: object) -> list[str]:
    """The synthetic feature config reading `out` as its rgb modality."""
    flags = [
        "--config", str(CONFIGS / "data" / "synthetic_features.yaml"),
        f"--data.init_args.root={bench}", "--data.init_args.load=[rgb]",
        f"--data.init_args.modalities.rgb.init_args.path={out}/{{video_id}}.npy",
    ]  # fmt: skip
    return flags + [
        f"--data.init_args.modalities.rgb.init_args.{k}={v}" for k, v in init_args.items()
    ]


@pytest.fixture(scope="module")
def snippets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The tiny benchmark, a weights file, and rgb snippet features extracted with it."""
    bench = tiny_benchmark(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("backbone")
    weights, out = weights_file(tmp), tmp / "rgb"
    argv = [
        *data(bench, "rgb"), "--backbone", "r3d_18", "--weights", str(weights),
        "--snippet-frames", str(WINDOW), "--snippet-stride", str(STRIDE), "--out", str(out),
    ]  # fmt: skip
    assert extract_features.main(argv) == 0
    return bench, weights, out


def test_snippets_one_file_per_video_read_back_by_feature_source(
    snippets: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bench, _, out = snippets
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["fps"], meta["stride"], meta["window"], meta["snippets"]) == (
        10.0, STRIDE, WINDOW, True
    )  # fmt: skip
    assert meta["backbone"] == "r3d_18" and meta["feature_dim"] == 512
    assert meta["weights_blake2b"] and meta["command"].startswith("crossdistill extract-features")
    database = json.loads((bench / "annotations" / "activitynet.json").read_text())["database"]
    assert sorted(meta["files"]) == sorted(database)
    for video_id, video in database.items():
        frames = round(video["duration"] * 10)
        features = np.load(out / f"{video_id}.npy")
        assert features.shape == (max(1, (frames - WINDOW) // STRIDE + 1), 512)
        assert np.isfinite(features).all()
    capsys.readouterr()
    flags = features_data(bench, out, stride=STRIDE, window=WINDOW, fps=10)
    assert data_check.main(flags) == 0, capsys.readouterr()
    # the wrong grid (the default stride 1) is a length problem, so the check means something
    assert data_check.main(features_data(bench, out)) == 1


def test_a_snippet_is_the_encoder_over_its_frames(
    snippets: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    bench, weights, out = snippets
    from lightning_modules.commands.data_check import data_config_parser

    parser = data_config_parser("x", "x")
    datamodule = parser.instantiate(parser.parse_args(data(bench, "rgb"))).data
    record = next(iter(datamodule.annotation_set.records.values()))
    frames = round(record.duration * 10)
    whole = TimeGrid(0.0, frames / 10, frames)  # one step per frame
    video = datamodule.modalities["rgb"].load(record, whole)["rgb"]  # (3, T, 16, 16)
    snippet = video[:, STRIDE : STRIDE + WINDOW][None]  # snippet 1: frames 24..31
    encoder = TorchvisionVideoEncoder("r3d_18", pretrained=str(weights), freeze=True).eval()
    with torch.no_grad():
        expected = encoder({"rgb": snippet}, torch.ones(1, WINDOW)).mean(-1)[0].numpy()
    written = np.load(out / f"{record.video_id}.npy")[1]
    np.testing.assert_allclose(written, expected, rtol=1e-4, atol=1e-5)


def test_flow_backbone_on_the_data_grid(
    snippets: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench, weights, _ = snippets
    out = tmp_path / "flow"
    argv = [*data(bench, "flow"), "--backbone", "r3d_18", "--weights", str(weights),
            "--modality", "flow", "--out", str(out)]  # fmt: skip
    assert extract_features.main(argv) == 0
    printed = capsys.readouterr().out
    assert "[6/6]" in printed and "class_path: datamodules.sources.FeatureSource" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["modality"], meta["stride"], meta["window"], meta["snippets"]) == (
        "flow", 1, 1, False
    )  # fmt: skip
    database = json.loads((bench / "annotations" / "activitynet.json").read_text())["database"]
    for video_id, video in database.items():
        assert np.load(out / f"{video_id}.npy").shape == (round(video["duration"] * 10), 512)


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--checkpoint", "T.ckpt", "--backbone", "r3d_18", "--weights", "W.pt"], 2,
         "give exactly one encoder"),
        ([], 2, "give exactly one encoder"),
        (["--backbone", "r3d_18"], 2, "needs --weights FILE"),
        (["--backbone", "r3d_18", "--weights", "missing.pt"], 1,
         "torch.save(torchvision.models.video.r3d_18(weights='KINETICS400_V1')"),
        (["--backbone", "r3d_18", "--weights", "W.pt", "--snippet-frames", "8"], 2,
         "--snippet-frames and --snippet-stride together"),
        (["--backbone", "r3d_18", "--weights", "W.pt", "--modality", "flow"], 2,
         "--data.init_args.load '[flow]'"),
    ],
)  # fmt: skip
def test_wrong_flags_are_one_line_with_the_fix(
    bench: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    status: int,
    message: str,
) -> None:
    argv = [*data(bench, "rgb"), *[str(tmp_path / f) if f.endswith((".pt", ".ckpt")) else f
            for f in flags], "--out", str(tmp_path / "out")]  # fmt: skip
    assert extract_features.main(argv) == status
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_features_stored_t_1_1_d_pass_data_check_and_other_shapes_are_named(
    snippets: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench, _, out = snippets
    folder = tmp_path / "pdan"
    folder.mkdir()
    for path in out.glob("*.npy"):  # no meta.json: features from elsewhere
        array = np.load(path)
        np.save(folder / path.name, array[:, None, None, :])
    flags = features_data(bench, folder, stride=STRIDE, window=WINDOW, fps=10)
    assert data_check.main(flags) == 0, capsys.readouterr()
    from datamodules.sources import FeatureSource

    source = FeatureSource(path=f"{folder}/{{video_id}}.npy", stride=STRIDE, window=WINDOW, fps=10)
    source.name = "rgb"
    from datamodules.annotations import read_activitynet

    record = next(
        iter(read_activitynet(bench / "annotations" / "activitynet.json").records.values())
    )
    grid = TimeGrid(0.0, 3.2, 32)
    loaded = source.load(record, grid)["rgb"]
    assert tuple(loaded.shape) == source.sample_shapes(32, record)["rgb"] == (512, 32)
    first = np.load(out / f"{record.video_id}.npy")
    np.testing.assert_array_equal(loaded[:, 0].numpy(), first[0])

    victim = folder / f"{record.video_id}.npy"
    np.save(victim, np.zeros((5, 2, 512), np.float32))
    capsys.readouterr()
    assert data_check.main(flags) == 1
    printed = capsys.readouterr()
    assert str(victim) in printed.out + printed.err
    assert "(5, 2, 512), not (T, D) or (T, 1, 1, D)" in printed.out + printed.err


README_SECTION = "### Features from a pretrained backbone: `crossdistill extract-features`"


def readme_commands() -> list[list[str]]:
    """The `crossdistill ...` lines of the README's section (continuations joined)."""
    text = (REPO_ROOT / "README.md").read_text().split(README_SECTION)[1].split("\n## ")[0]
    lines = re.findall(r"^crossdistill (.+)$", text.replace("\\\n", " "), flags=re.MULTILINE)
    return [shlex.split(line) for line in lines]


def test_the_readme_commands_run(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As written, on the tiny benchmark under data/synthetic with random weights in the
    README's file; frames shrunk to 16 pixels (the last flag wins) to stay short (about 10 s)."""
    (extract, extract_argv), (check, check_argv) = [(c[0], c[1:]) for c in readme_commands()]
    assert (extract, check) == ("extract-features", "data-check")
    root = tmp_path / "data" / "synthetic"
    root.mkdir(parents=True)
    for entry in bench.iterdir():  # the benchmark's files, read only; features are new
        (root / entry.name).symlink_to(entry)
    (tmp_path / "data" / "weights").mkdir()
    weights_file(tmp_path / "data" / "weights", "r2plus1d_18").rename(
        tmp_path / "data" / "weights" / "r2plus1d_18_kinetics400.pt"
    )
    (tmp_path / "configs").symlink_to(CONFIGS)
    monkeypatch.chdir(tmp_path)
    small = ["--data.init_args.modalities.rgb.init_args.size=16", "--data.init_args.num_workers=0"]
    assert main([extract, *extract_argv, *small]) == 0
    assert main([check, *check_argv]) == 0
