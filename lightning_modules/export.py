"""Student-only export: the trained model's weights and config in one plain file.

Every checkpoint a fit writes into its run's `checkpoints/` folder (`best.ckpt`, `last.ckpt`)
gets a twin, `best.student.pt` / `last.student.pt`, written by `StudentExport` from the same
in-memory checkpoint (so the twin always holds the weights of the checkpoint beside it). It
holds only what inference needs:

    format            "crossdistill-student-export"
    format_version    FORMAT_VERSION
    model             the model's config, {"class_path", "init_args"} as in the YAML (from the
                      module's saved hyperparameters, its `model`), with every `pretrained`
                      path cleared: the weights are here
    state_dict        the model's tensors (the `model.*` entries of the checkpoint, unprefixed);
                      never a teacher's, never a distillation objective's (projection heads...)
    dropped_modules   submodules left out because inference never runs them: the branch
                      detectors (`branch_head`, `motion_head`) of Lee et al.'s DecomposedStudent,
                      whose inference is the joint path only
    task              the task's config, {"class_path", "init_args"}
    class_names       the classes of the head(s), in logit order (a dict for verb/noun heads)
    modalities        the inputs the model reads, e.g. ["rgb"]
    trained_with      the LightningModule class, the checkpoint's file name, epoch and step

Only dicts, lists, strings, numbers and tensors, so `torch.load(path, weights_only=True)` opens
it. `load_student(path)` rebuilds the model from the class paths with jsonargparse (as the CLI
does) and loads the weights strictly; it imports model classes only, no teacher checkpoint and
no distillation code. `ExportedStudent` evaluates a file with `crossdistill test`/`predict`:

    crossdistill test --config configs/data/synthetic_features.yaml \
        --data.init_args.load '[rgb]' \
        --model lightning_modules.export.ExportedStudent \
        --model.init_args.path outputs/runs/NAME/checkpoints/best.student.pt
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentParser, Namespace
from lightning_fabric.plugins import CheckpointIO
from torch import nn

from datamodules.sources.integrity import commit
from lightning_modules.models.decomposed import DecomposedStudent
from lightning_modules.models.encoder import input_modalities
from lightning_modules.runs.checkpoint_io import save_atomic, save_pending
from lightning_modules.task_module import TaskModule
from lightning_modules.tasks import Task

FORMAT = "crossdistill-student-export"
FORMAT_VERSION = 1
SUFFIX = ".student.pt"
MODEL_ARGUMENT = "model"
"""The init argument holding the trained model (DistillModule's and TeacherModule's)."""
INFERENCE_UNUSED: dict[type[nn.Module], tuple[str, ...]] = {
    DecomposedStudent: ("branch_head", "motion_head"),
}
"""Submodules that a model's inference never runs (after `inference_only()`), left out."""


class ExportError(ValueError):
    """A file that is not a student export this version reads, or a module that cannot be
    exported; the message names the file and what was expected."""


def export_path(checkpoint: str | Path) -> Path:
    """`.../best.ckpt` -> `.../best.student.pt`."""
    path = Path(checkpoint)
    return path.with_name(path.name.removesuffix(".ckpt") + SUFFIX)


# ---------------------------------------------------------------------------------------------
# writing


def model_config(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The trained model's `{"class_path", "init_args"}` from a module's hyperparameters."""
    value = hparams.get(MODEL_ARGUMENT)
    if value is None:
        raise ExportError(
            f"the module's hyperparameters have no `{MODEL_ARGUMENT}`: only modules that train "
            "a model given as `model` (DistillModule, TeacherModule) can be exported"
        )
    if not (isinstance(value, Mapping) and "class_path" in value):
        raise ExportError(
            f"the module's `{MODEL_ARGUMENT}` was given as an object ({type(value).__name__}), "
            "so its config is unknown: an export rebuilds the model from class_path/init_args, "
            "which the CLI (crossdistill fit) records. Fix: train through the CLI, or build the "
            "module with jsonargparse from a config"
        )
    return without_pretrained(_plain(value, MODEL_ARGUMENT))


def export_payload(
    checkpoint: Mapping[str, Any], model: nn.Module, class_names: Any, checkpoint_name: str = ""
) -> dict[str, Any]:
    """The export of a Lightning checkpoint dict of a module whose trained model is `model`
    (used for the modalities it reads and the submodules inference skips)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    state = {
        key.removeprefix("model."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("model.")
    }
    dropped = [
        name
        for name in _inference_unused(model)
        if any(key.startswith(f"{name}.") for key in state)
    ]
    state = {k: v for k, v in state.items() if not k.startswith(tuple(f"{n}." for n in dropped))}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_config(hparams),
        "state_dict": state,
        "dropped_modules": dropped,
        "task": _plain(hparams.get("task"), "task"),
        "class_names": _plain(class_names, "class_names"),
        "modalities": input_modalities(model, dropped),
        "trained_with": {
            "module": str(hparams.get("_class_path", "")),
            "checkpoint": checkpoint_name,
            "epoch": int(checkpoint.get("epoch", -1)),
            "global_step": int(checkpoint.get("global_step", -1)),
        },
    }


def save_export(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then renamed over `path`."""
    path = Path(path)
    save_atomic(dict(payload), path)
    return path


def _inference_unused(model: nn.Module) -> tuple[str, ...]:
    for cls, names in INFERENCE_UNUSED.items():
        if isinstance(model, cls):
            return names
    return ()


def _plain(value: Any, where: str) -> Any:
    """Config values as dicts, lists, strings, numbers and None (what weights_only loads)."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ExportError(
        f"{where} is a {type(value).__name__}: an export keeps only plain config values "
        "(class_path/init_args dicts, lists, strings, numbers), as the CLI records them"
    )


def without_pretrained(config: Any) -> Any:
    """Clear every `pretrained` weights path of a model config: the export's state dict (or a
    checkpoint's) already holds the weights, so rebuilding needs no other file."""
    if isinstance(config, dict):
        out = {k: without_pretrained(v) for k, v in config.items()}
        args = out.get("init_args")
        if "class_path" in out and isinstance(args, dict) and args.get("pretrained"):
            out["init_args"] = {**args, "pretrained": None}
        return out
    if isinstance(config, list):
        return [without_pretrained(v) for v in config]
    return config


class _ExportingCheckpointIO(CheckpointIO):
    """The trainer's CheckpointIO, which also writes the export of each checkpoint saved into
    `folder`, and removes it with the checkpoint."""

    def __init__(self, inner: CheckpointIO, callback: StudentExport) -> None:
        self.inner = inner
        self.callback = callback

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        """The export is written completely first, then the checkpoint, then the export is put
        in place: a failure (a full disk) leaves the previous checkpoint and export together,
        never a new checkpoint beside an export one epoch older."""
        pending = self.callback.prepare_export(checkpoint, Path(path))
        try:
            self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        except BaseException:
            if pending is not None:
                pending.unlink(missing_ok=True)
            raise
        if pending is not None:
            commit(pending, export_path(path))

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.inner.load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)
        if self.callback.exports(Path(path)):
            export_path(path).unlink(missing_ok=True)

    def teardown(self) -> None:
        self.inner.teardown()


class StudentExport(pl.Callback):
    """Writes `<name>.student.pt` next to every `<name>.ckpt` a fit saves into `dirpath`.

    Hooked into the strategy's CheckpointIO for the duration of a fit, so the export is made
    from exactly the checkpoint being written (best or last), on the process that writes it.
    Other stages (test, predict) export nothing. Works for a DistillModule (its `student`) and a
    TeacherModule (its `model`); the module must have been built from a config (the CLI does).
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self._installed: tuple[Any, Any] | None = None
        self._module: pl.LightningModule | None = None
        self._trainer: pl.Trainer | None = None

    def exports(self, checkpoint: Path) -> bool:
        return (
            checkpoint.suffix == ".ckpt" and checkpoint.parent.resolve() == self.dirpath.resolve()
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self._installed is not None:
            return
        # fail before training, not at the first checkpoint
        model_config(pl_module.hparams)
        _plain(pl_module.hparams.get("task"), "task")
        if not isinstance(getattr(pl_module, "model", None), nn.Module):
            raise ExportError(f"{type(pl_module).__name__} has no `model` to export")
        strategy = trainer.strategy
        self._installed = (strategy, strategy.checkpoint_io)
        strategy.checkpoint_io = _ExportingCheckpointIO(strategy.checkpoint_io, self)
        self._module, self._trainer = pl_module, trainer

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._installed is not None:
            strategy, original = self._installed
            strategy.checkpoint_io = original
            self._installed = None
        self._module = self._trainer = None

    def prepare_export(self, checkpoint: dict[str, Any], path: Path) -> Path | None:
        """The export of the checkpoint being written to `path`, complete in a temporary file
        beside its place (None when this checkpoint has no export)."""
        if self._module is None or not self.exports(path):
            return None
        datamodule = getattr(self._trainer, "datamodule", None)
        class_names = getattr(self._module, "class_names", None)
        if class_names is None and datamodule is not None:
            class_names = datamodule.class_names
        payload = export_payload(checkpoint, self._module.model, class_names, path.name)
        return save_pending(dict(payload), export_path(path))


# ---------------------------------------------------------------------------------------------
# reading


def read_export(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checked contents of an export file (plain `torch.load(weights_only=True)`)."""
    path = Path(path)
    expected = (
        f"Expected a student export ({FORMAT}, format version {FORMAT_VERSION}) as written "
        f"next to a run's checkpoints, e.g. RUN/checkpoints/best{SUFFIX}"
    )
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. {expected}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        hint = (
            " (a Lightning checkpoint? use its .student.pt twin)" if path.suffix == ".ckpt" else ""
        )
        raise ExportError(
            f"{path} is not a student export{hint}: torch.load(weights_only=True) could not read "
            f"it ({type(error).__name__}). {expected}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = (
            "a Lightning checkpoint"
            if isinstance(payload, dict) and "state_dict" in payload and "format" not in payload
            else f"a {type(payload).__name__}"
            + (f" with keys {sorted(map(str, payload))[:6]}" if isinstance(payload, dict) else "")
        )
        raise ExportError(f"{path} is not a student export: it holds {found}. {expected}")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        fix = (
            "upgrade crossdistill to read it"
            if newer
            else "export it again from its Lightning checkpoint with this version"
        )
        raise ExportError(
            f"{path} has export format version {version!r}, this crossdistill reads version "
            f"{FORMAT_VERSION}: {fix}"
        )
    missing = {"model", "state_dict", "task", "class_names", "modalities"} - set(payload)
    if missing:
        raise ExportError(f"{path} lacks {sorted(missing)}: the file is damaged. {expected}")
    return payload


def build_model(export: Mapping[str, Any]) -> nn.Module:
    """The export's model from its config, with untrained weights and dropped modules removed."""
    model = _instantiate(nn.Module, export["model"], "model")
    dropped = list(export.get("dropped_modules") or [])
    for name in dropped:
        setattr(model, name, _DroppedModule(name, type(model).__name__))
    if dropped:
        model.inference_only()
    return model


def load_student(path: str | Path, map_location: Any = "cpu") -> nn.Module:
    """The exported model, weights loaded (strict), in eval mode."""
    return trained_model(read_export(path, map_location), path)


def trained_model(export: Mapping[str, Any], path: str | Path) -> nn.Module:
    """`build_model`, then the export's weights (strict), in eval mode."""
    model = build_model(export)
    try:
        model.load_state_dict(export["state_dict"])
    except RuntimeError as error:
        raise ExportError(
            f"{path}: the weights do not fit the model its config builds "
            f"({export['model'].get('class_path')}): {error}"
        ) from error
    return model.eval()


def build_task(export: Mapping[str, Any]) -> Task:
    return _instantiate(Task, export["task"], "task")


def _instantiate(base: type, config: Any, name: str) -> Any:
    """`base` subclass from `{"class_path", "init_args"}`, resolved as the CLI resolves it."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, name, required=True)
    # a copy: jsonargparse turns nested dicts of what it parses into Namespaces in place
    return parser.instantiate(parser.parse_object({name: copy.deepcopy(config)}))[name]


class _DroppedModule(nn.Module):
    """Stands in for a submodule left out of the export; calling it says so."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__()
        self.name, self.owner = name, owner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"{self.owner}.{self.name} is not in the student export (inference does not use it): "
            "keep inference_only() on, or load the Lightning checkpoint to train further"
        )


class ExportedStudent(TaskModule):
    """A student export evaluated like any trained module (`crossdistill test` / `predict`).

    The model, the task and the class names come from the file; the data config only has to
    provide the modalities the model reads (`data.init_args.load: [rgb]` for an RGB student) and
    the same classes. `test` gives the metrics and predictions files of testing the run's
    Lightning checkpoint; `predict` writes the predictions files only.

    Args:
        path: the export, e.g. `outputs/runs/NAME/checkpoints/best.student.pt`.
        predictions_dir: where predictions files go (default: the command's run folder).
    """

    def __init__(self, path: str, predictions_dir: str | None = None) -> None:
        export = read_export(path)
        super().__init__(build_task(export), None, predictions_dir)
        self.save_init_args()
        self.export_info = {k: v for k, v in export.items() if k != "state_dict"}
        self.model = trained_model(export, path)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        path = self.hparams["path"]
        expected = self.export_info["class_names"]
        found = _plain(self.class_names, "class_names")
        if expected is not None and found != expected:
            raise ValueError(
                f"{path} was trained on the classes {expected}, the data has {found}: evaluate it "
                "with the data config (annotations, class list) it was trained on"
            )
        loaded = set(self.trainer.datamodule.modalities)
        needed = self.export_info["modalities"]
        if missing := sorted(set(needed) - loaded):
            raise ValueError(
                f"{path} reads {needed}, but the data loads {sorted(loaded)}: add {missing} to "
                f"data.init_args.load (e.g. --data.init_args.load '{needed}')"
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        raise RuntimeError(
            "an exported student is for evaluation (test, validate, predict); to train further, "
            "resume its run from the Lightning checkpoint (--ckpt_path last)"
        )
