"""The frozen teachers' package: importable without the student, one stitching rule on the
time grid, and the rebuild command of a cached fit (what cache-teachers reads, nothing else)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datamodules.grid import place_window
from lightning_modules.teachers.cache import rebuild_command
from lightning_modules.teachers.whole_videos import stitched_outputs
from tests.conftest import REPO_ROOT

STAND_IN = SimpleNamespace(sources={})
"""A stand-in dataset: the tests replace the loader by the batches of `_batches`."""

PROBE = """
import importlib, pkgutil, sys
import lightning_modules.teachers as teachers
for module in pkgutil.iter_modules(teachers.__path__):
    importlib.import_module(f"lightning_modules.teachers.{module.name}")
print(sorted(m for m in sys.modules if m.startswith(("lightning_modules.distill",
                                                       "lightning_modules.commands"))))
"""


def test_the_teachers_import_neither_the_student_nor_the_commands() -> None:
    """No loop: `lightning_modules.teachers` and every module in it load without
    `lightning_modules.distill` (which uses them) or the commands (which drive them)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_windows_are_placed_from_the_step_of_their_start_and_cut_at_the_end() -> None:
    rows = np.full((10, 1), np.nan)
    place_window(rows, np.arange(4.0)[:, None], t0=1.5, stride=0.5)  # steps 3-6
    place_window(rows, np.arange(4.0)[:, None] + 10, t0=3.5, stride=0.5)  # 7-9, one past the end
    np.testing.assert_array_equal(rows[3:, 0], [0, 1, 2, 3, 10, 11, 12])
    assert np.isnan(rows[:3]).all()


def _batches(duration: float, tiles: list[float]) -> list[dict]:
    """Batches as the datamodule's loaders make them: a video's 4-step tiles at 1 s a step, the
    value of each step its instant."""
    batches = []
    for t0 in tiles:
        instants = t0 + (np.arange(4) + 0.5) * 1.0
        batches.append({
            "mask": torch.from_numpy(instants < duration)[None],
            "inputs": {"x": torch.from_numpy(instants).float()[None, None]},
            "meta": {"video_id": ["v"], "t0": torch.tensor([t0]), "stride": torch.tensor([1.0]),
                     "duration": torch.tensor([duration])},
        })  # fmt: skip
    return batches


def test_stitched_outputs_put_every_tile_on_the_video_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lightning_modules.teachers.whole_videos as whole_videos

    batches = _batches(6.6, [0.0, 4.0])
    monkeypatch.setattr(whole_videos, "DataLoader", lambda *args, **kwargs: batches)
    found = dict(stitched_outputs(lambda batch: batch["inputs"]["x"], STAND_IN))
    np.testing.assert_array_equal(found["v"][:, 0], np.arange(7) + 0.5)
    monkeypatch.setattr(whole_videos, "DataLoader", lambda *args, **kwargs: batches[:1])
    with pytest.raises(AssertionError, match="3 of its 7 steps are in no window"):
        dict(stitched_outputs(lambda batch: batch["inputs"]["x"], STAND_IN))


def test_the_rebuild_command_keeps_what_cache_teachers_reads() -> None:
    """Configs, data and model options with their values, whatever else a fit takes."""
    argv = [
        "fit", "--config", "a.yaml", "--nan_guard", "skip", "--on_changed_inputs=warn",
        "--data.init_args.load", "[rgb]", "--model", "lightning_modules.distill.DistillModule",
        "--trainer.devices", "2", "--data.init_args.x", "-1", "--seed_everything", "-1",
    ]  # fmt: skip
    assert rebuild_command(argv) == (
        "crossdistill cache-teachers --config a.yaml --data.init_args.load '[rgb]' "
        "--model lightning_modules.distill.DistillModule --data.init_args.x -1"
    )
