"""The task is declared once: the data config's `task:` names a `TaskData` of the registry, and a
new task is one `TaskData` plus one `Task`, here a toy one defined in this test only, which the
datamodule, the dataset, the collate, the test loop and the predictions file serve unchanged."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.datamodule import MultimodalDataModule
from datamodules.sampling import Window
from datamodules.sources import DataError, KeypointSource
from datamodules.tasks import CLIPS, DENSE, SEGMENTS, TASK_DATA, ClassNames, Labels, TaskData
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.tasks import ClipTask, DenseTask, SegmentTask, Task
from lightning_modules.teacher import TeacherModule


class PresenceData(TaskData):
    """Which classes occur in the window: `(K,)` multi-hot."""

    kind = "presence"

    def targets(self, window: Window, mask: Tensor, labels: Labels) -> dict[str, Any]:
        present = torch.zeros(len(labels.classes))
        for segment in window.record.segments:
            if segment.start < window.grid.t1 and segment.end > window.grid.t0:
                present[labels.classes[segment.label]] = 1.0
        return {"presence": present}

    def collate(self, targets: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
        return {"presence": torch.stack([t["presence"] for t in targets])}


class PresenceTask(Task):
    """BCE of the logits max-pooled over valid steps; predictions in `presence.json`."""

    data = PresenceData()
    predictions_file = "presence.json"

    def loss(self, output: ModelOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        pooled = self.predict(output, batch).clamp(1e-6, 1 - 1e-6)
        return {"loss": F.binary_cross_entropy(pooled, batch["targets"]["presence"])}

    def predict(self, output: ModelOutput, batch: Mapping[str, Any]) -> Tensor:
        logits = output.logits.float().masked_fill(~output.mask[:, None], float("-inf"))
        return torch.sigmoid(logits.amax(dim=-1))

    def metrics(self, num_classes: int) -> nn.ModuleDict:
        return nn.ModuleDict()

    def update_metrics(
        self, metrics: nn.ModuleDict, output: ModelOutput, batch: Mapping[str, Any]
    ) -> None:
        pass

    def prediction_row(self, predictions: Tensor, batch: Mapping[str, Any], b: int) -> dict:
        present = batch["targets"]["presence"][b].nonzero().ravel().tolist()
        return {"scores": predictions[b].tolist(), "present": present}

    def write_rows(self, rows: Sequence[dict], class_names: ClassNames, path: Path) -> None:
        windows = {
            f"{r['video_id']}@{r['window_index']}": {"scores": r["scores"], "present": r["present"]}
            for r in rows
        }
        path.write_text(json.dumps({"classes": list(class_names), "windows": windows}))


class PoseLogits(nn.Module):
    """Per-step logits from the mean pose coordinate: enough of a model to be tested."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(1, num_classes)

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        steps = inputs["pose"].flatten(2).mean(dim=-1, keepdim=True)  # (B, T, 1)
        return ModelOutput(steps.transpose(1, 2), self.linear(steps).transpose(1, 2), mask)


def test_the_registry_holds_each_task_once_and_each_model_task_points_at_its_own() -> None:
    assert TASK_DATA == {"dense": DENSE, "segments": SEGMENTS, "clips": CLIPS}
    assert (DenseTask.data, SegmentTask.data, ClipTask.data) == (DENSE, SEGMENTS, CLIPS)
    assert [kind for kind, data in TASK_DATA.items() if data.per_clip] == ["clips"]


def test_a_task_not_registered_is_one_message_naming_the_key(bench: Path) -> None:
    with pytest.raises(DataError, match=r"data.init_args.task is 'dens'.*\['clips', 'dense'"):
        MultimodalDataModule(bench, {"pose": KeypointSource()}, task="dens")


def test_a_fourth_task_is_one_data_declaration_and_one_model_task(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TASK_DATA, PresenceData.kind, PresenceTask.data)
    dm = MultimodalDataModule(
        bench, {"pose": KeypointSource()}, task="presence", window_seconds=3.2, window_steps=32,
        batch_size=2, num_workers=0,
    )  # fmt: skip
    module = TeacherModule(
        PoseLogits(len(dm.annotation_set.classes)), PresenceTask(), predictions_dir=str(tmp_path)
    )
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.test(module, datamodule=dm, verbose=False)

    written = json.loads((tmp_path / "presence.json").read_text())
    assert written["classes"] == list(dm.annotation_set.classes)
    sampler = dm.datasets["test"].sampler
    windows = [w for i in range(len(sampler)) for w in sampler.windows(i)]
    assert sorted(written["windows"]) == sorted(f"{w.record.video_id}@{w.index}" for w in windows)
    present = 0
    for window in windows:
        entry = written["windows"][f"{window.record.video_id}@{window.index}"]
        labels = {
            dm.annotation_set.classes.index(s.label)
            for s in window.record.segments
            if s.start < window.grid.t1 and s.end > window.grid.t0
        }
        assert entry["present"] == sorted(labels)
        assert len(entry["scores"]) == len(dm.annotation_set.classes)
        present += bool(labels)
    assert present > 0  # the windows hold actions: the targets were built, not left empty
