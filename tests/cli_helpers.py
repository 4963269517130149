"""Shared by the CLI, W&B and sweep tests: the base configs and the overrides of a tiny run."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torchvision.models.video as video_models
import yaml
from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import LightningCLI

from lightning_modules.commands import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
BASE = [
    "--config", str(CONFIGS / "data/synthetic.yaml"),
    "--config", str(CONFIGS / "trainer/cpu.yaml"),
    "--config", str(CONFIGS / "teacher/dense_flow.yaml"),
]  # fmt: skip
CONSOLE_SCRIPT = Path(sys.executable).with_name("crossdistill")
FEATURES = ["--config", str(CONFIGS / "data" / "synthetic_features.yaml")]


def with_base(path: Path) -> list[str]:
    """`--config` flags for a config file, preceded by its bases when it is an overlay: its
    comment says "compose after X.yaml" (X relative to configs/, itself maybe an overlay), or
    names the whole chain, "compose after X.yaml ..., then Y.yaml, then this file"."""
    comment = " ".join(line.lstrip("# ") for line in path.read_text().splitlines())
    first = re.search(r"compose after\s+([\w/]+\.yaml)", comment)
    if first is None:
        return ["--config", str(path)]
    chain = re.search(r"(.*?)then this file", comment[first.end() :])
    if chain is None:
        return [*with_base(CONFIGS / first.group(1)), "--config", str(path)]
    bases = [first.group(1), *re.findall(r"then ([\w/]+\.yaml)", chain.group(1))]
    return [
        *(flag for base in bases for flag in ("--config", str(CONFIGS / base))),
        "--config",
        str(path),
    ]


def tiny(root: Path, runs: Path) -> list[str]:
    """One training step per epoch on the tiny benchmark: 16-step windows of 32x32 flow."""
    return [
        "--data.init_args.root", str(root),
        "--data.init_args.num_workers", "0",
        "--data.init_args.batch_size", "64",
        "--data.init_args.window_steps", "16",
        "--data.init_args.window_seconds", "1.6",
        "--data.init_args.modalities.flow.init_args.size", "32",
        "--trainer.max_epochs", "1",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(runs),
    ]  # fmt: skip


def quiet_features_run(root: Path, runs: Path) -> list[str]:
    """Overrides of a short, quiet run on the snippet features of the benchmark at `root`."""
    return [
        f"--data.init_args.root={root}", "--data.init_args.batch_size=2",
        f"--trainer.default_root_dir={runs}", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.limit_val_batches=1",
    ]  # fmt: skip


def print_config(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """The resolved config of `crossdistill fit ARGS`, parsed in this process."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["fit", *args, "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def subprocess_env(tmp: Path) -> dict[str, str]:
    """The environment of a CLI subprocess: venv on PATH, W&B offline and kept inside `tmp`."""
    env = dict(os.environ)
    env["PATH"] = f"{CONSOLE_SCRIPT.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        env[variable] = str(tmp / "wandb-home")
    return env


def build_cli(args: list[str]) -> LightningCLI:
    """The objects `crossdistill fit` builds from these arguments, without running anything."""
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=False,
        save_config_kwargs={"overwrite": True},
    )


def random_backbone_weights(config: Path, folder: Path) -> list[str]:
    """For a config whose encoder is a `TorchvisionVideoEncoder`: its architecture with random
    weights saved to a file in `folder` (as a user saves torchvision's published ones) and the
    flag that points `pretrained` at it; no flag for other configs."""
    model = yaml.safe_load(config.read_text())["model"]["init_args"].get("model") or {}
    encoder = (model.get("init_args") or {}).get("encoder") or {}
    if not str(encoder.get("class_path")).endswith("TorchvisionVideoEncoder"):
        return []
    arch = encoder["init_args"]["arch"]
    path = folder / f"{arch}_random.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save(getattr(video_models, arch)().state_dict(), path)
    return [f"--model.init_args.model.init_args.encoder.init_args.pretrained={path}"]


def clip_run(bench: Path, runs: Path, *configs: str) -> list[str]:
    """A one-step clip-recognition fit on the tiny benchmark (32x32 frames, no checkpoints)."""
    return [
        "--config", str(CONFIGS / "data/synthetic_clips.yaml"),
        "--config", str(CONFIGS / "trainer/cpu.yaml"),
        *[flag for config in configs for flag in ("--config", str(CONFIGS / config))],
        f"--data.init_args.root={bench}", "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--data.init_args.modalities.rgb.init_args.size=32",
        "--data.init_args.modalities.flow.init_args.size=32",
        "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.enable_checkpointing=false", f"--trainer.default_root_dir={runs}",
    ]  # fmt: skip
