"""Configs for the real benchmarks' feature layouts: each teacher config composes with its
data config, and its model runs on features of the widths the data config reads."""

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
}


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
    parsed = parser.parse_args(["--config", str(data), *with_base(teacher)])
    config = parsed.as_dict()
    module = parser.instantiate_classes(parsed.clone().update(None, "data")).model
    sources = config["data"]["init_args"]["modalities"]
    steps = 64
    inputs = {}
    for name in config["data"]["init_args"]["load"]:
        channels = sources[name]["init_args"].get("channels")
        width = channels[1] - channels[0] if channels else _feature_width(module, name)
        inputs[name] = torch.randn(2, width, steps)
    output = module.model(inputs, torch.ones(2, steps, dtype=torch.bool))
    assert output.embeddings.shape[-1] == steps and torch.isfinite(output.embeddings).all()


def _feature_width(module: LightningModule, modality: str) -> int:
    encoder = module.model.encoder
    encoders = getattr(encoder, "encoders", [encoder])
    return next(e.project.in_channels for e in encoders if e.modality == modality)
