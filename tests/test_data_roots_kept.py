"""No command deletes a data root: the synthetic generator writes only into an empty folder or
over a benchmark it made itself, and the pre-flight check writes nothing at all.

Before this, a root holding an `annotations/` folder (every real dataset layout) or a
`benchmark.json` was deleted and overwritten with synthetic videos by `data-check`, `fit`,
`test` and `synthetic --out` whenever the config had a `synthetic:` block.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.datamodule import MultimodalDataModule
from datamodules.sources import VideoSource
from datamodules.synthetic import SyntheticConfig, generate_benchmark
from datamodules.synthetic.generator import BenchmarkRootError, is_complete
from lightning_modules.commands.data_check import main as data_check
from tests.conftest import REPO_ROOT

CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")
SMOKE = str(REPO_ROOT / "configs" / "smoke" / "teacher.yaml")
SMALL = SyntheticConfig(videos=3, min_duration=3.0, max_duration=4.0)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def real_layout(tmp_path: Path) -> Path:
    """A real dataset's layout: annotations, a video, features, as a user keeps them."""
    root = tmp_path / "thumos14"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "thumos14.json").write_text('{"database": {}}')
    (root / "videos").mkdir()
    (root / "videos" / "video_test_0000004.mp4").write_bytes(b"\x00" * 1000)
    (root / "features").mkdir()
    (root / "features" / "video_test_0000004.npy").write_bytes(b"\x93NUMPY" + b"\x01" * 100)
    return root


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ours") / "bench"
    generate_benchmark(root, SMALL, workers=1)
    return root


def test_generation_refuses_a_real_dataset_and_keeps_every_file(real_layout: Path) -> None:
    before = _snapshot(real_layout)
    with pytest.raises(BenchmarkRootError, match=r"nothing was written or deleted\. Fix: point"):
        generate_benchmark(real_layout, SMALL, workers=1)
    assert _snapshot(real_layout) == before


def test_a_foreign_manifest_is_not_ours(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "benchmark.json").write_text(json.dumps({"name": "my benchmark"}))
    (root / "notes.txt").write_text("keep me")
    before = _snapshot(root)
    with pytest.raises(BenchmarkRootError, match="no synthetic benchmark written by the generator"):
        generate_benchmark(root, SMALL, workers=1)
    assert _snapshot(root) == before


def test_synthetic_cli_refuses_with_exit_1(real_layout: Path) -> None:
    before = _snapshot(real_layout)
    done = subprocess.run(
        [CONSOLE_SCRIPT, "synthetic", "--out", str(real_layout), "--videos", "3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and str(real_layout) in done.stderr
    assert _snapshot(real_layout) == before


def test_data_check_writes_nothing(real_layout: Path, tmp_path: Path) -> None:
    before = _snapshot(real_layout)
    assert data_check(["--config", SMOKE, f"--data.init_args.root={real_layout}"]) == 1
    assert _snapshot(real_layout) == before
    empty = tmp_path / "not_yet"
    assert data_check(["--config", SMOKE, f"--data.init_args.root={empty}"]) == 1
    assert not empty.exists()


def test_fit_and_test_datamodule_refuses_a_real_dataset(real_layout: Path) -> None:
    """What `fit` and `test` build: the datamodule with the config's `synthetic:` block."""
    before = _snapshot(real_layout)
    with pytest.raises(BenchmarkRootError):
        MultimodalDataModule(
            root=str(real_layout), task="dense", modalities={"rgb": VideoSource()}, synthetic=SMALL
        )
    assert _snapshot(real_layout) == before


def test_extracted_features_in_our_benchmark_are_kept(ours: Path, tmp_path: Path) -> None:
    """The README's layout: features extracted into the benchmark's folder. Other options must
    not regenerate over them (they would describe the old videos); the same options reuse it."""
    root = tmp_path / "bench"
    subprocess.run(["cp", "-r", str(ours), str(root)], check=True)
    (root / "features" / "flow").mkdir(parents=True)
    (root / "features" / "flow" / "meta.json").write_text("{}")
    before = _snapshot(root)
    other = SyntheticConfig(videos=4, min_duration=3.0, max_duration=4.0)
    with pytest.raises(BenchmarkRootError, match=r"videos: 3 -> 4.*features/flow/meta.json"):
        generate_benchmark(root, other, workers=1)
    assert _snapshot(root) == before
    MultimodalDataModule(
        root=str(root), task="dense", modalities={"rgb": VideoSource()}, synthetic=SMALL
    )
    assert _snapshot(root) == before


def test_our_own_benchmark_is_regenerated_file_by_file(ours: Path, tmp_path: Path) -> None:
    """Over a benchmark of ours (finished, or interrupted) with other options the generator
    removes exactly the files that benchmark wrote: none of the old videos stays behind."""
    root = tmp_path / "bench"
    subprocess.run(["cp", "-r", str(ours), str(root)], check=True)
    (root / "benchmark.json").rename(root / "benchmark.partial.json")  # an interrupted run
    fewer = SyntheticConfig(videos=3, seed=1, min_duration=3.0, max_duration=4.0)
    generate_benchmark(root, fewer, workers=1)
    assert is_complete(root, fewer) and not (root / "benchmark.partial.json").exists()
    assert not is_complete(root, SMALL)
