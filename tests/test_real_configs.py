"""Configs for the real benchmarks' layouts: each teacher config composes with its data config,
and its model runs on features of the widths the data config reads (or on clips of frames, for
the clip datasets, with the heads of their classes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from pytorch_lightning import LightningDataModule, LightningModule

from tests.cli_helpers import with_base
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
DATA_OF = {
    "thumos14": "thumos14_i3d",
    "charades": "charades_i3d",
    "tsu": "tsu_i3d",
    "activitynet": "activitynet_i3d",
    "epic": "epic_kitchens_100",
    "ssv2": "ssv2",
}
# the clip datasets' teacher configs are heads composed after the R(2+1)D-18 clip models
HEADS = {"epic": {"verb": 97, "noun": 300}, "ssv2": {"clip": 174}}


# data configs whose models are another's: TSU cross-view (an overlay of cross-subject) and
# PKU-MMD (51 classes and TSU's feature widths: TSU's models), tested in test_real_layouts.py
SHARING_MODELS = {"tsu_i3d_cv", "pku_mmd_i3d"}


def test_every_real_data_config_has_teachers() -> None:
    used = set(DATA_OF.values()) | SHARING_MODELS
    assert {p.stem for p in (CONFIGS / "data" / "real").glob("*.yaml")} == used


@pytest.mark.parametrize(
    "teacher", sorted((CONFIGS / "teacher" / "real").glob("*.yaml")), ids=lambda p: p.stem
)
def test_real_teacher_config_composes_and_runs_on_its_features(teacher: Path) -> None:
    data = CONFIGS / "data" / "real" / f"{DATA_OF[teacher.stem.split('_')[0]]}.yaml"
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(LightningModule, "model")
    parser.add_subclass_arguments(LightningDataModule, "data")
    dataset = teacher.stem.split("_")[0]
    parsed = parser.parse_args(["--config", str(data), *with_base(teacher)])
    if dataset in HEADS:  # the clip models' pretrained weights are a user's file: random here
        parsed["model.init_args.model.init_args.encoder.init_args.pretrained"] = None
    config = parsed.as_dict()
    module = parser.instantiate_classes(parsed.clone().update(None, "data")).model
    sources = config["data"]["init_args"]["modalities"]
    steps = 64 if dataset not in HEADS else config["data"]["init_args"]["window_steps"]
    inputs = {}
    for name in config["data"]["init_args"]["load"]:
        channels = sources[name]["init_args"].get("channels")
        if dataset in HEADS:  # frames (RGB or flow) of a small square, not the configured size
            inputs[name] = torch.rand(2, 3 if name == "rgb" else 2, steps, 32, 32)
            continue
        width = channels[1] - channels[0] if channels else _feature_width(module, name)
        inputs[name] = torch.randn(2, width, steps)
    output = module.model(inputs, torch.ones(2, steps, dtype=torch.bool))
    assert output.embeddings.shape[-1] == steps and torch.isfinite(output.embeddings).all()
    if dataset in HEADS:
        logits = output.logits if isinstance(output.logits, dict) else {"clip": output.logits}
        assert {head: v.shape[-1] for head, v in logits.items()} == HEADS[dataset]


def _feature_width(module: LightningModule, modality: str) -> int:
    encoder = module.model.encoder
    encoders = getattr(encoder, "encoders", [encoder])
    return next(e.project.in_channels for e in encoders if e.modality == modality)
