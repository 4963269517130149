"""`CrossdistillCLI`: LightningCLI with run directories, which `crossdistill fit`, `validate`,
`test` and `predict` run (`lightning_modules.commands.lightning`).

Models and datamodules are chosen by `class_path` in YAML (subclass mode); configs compose in
order (`--config a.yaml --config b.yaml`, then `--key value` flags, later wins). On top of
LightningCLI, every command gets a run directory (see `runs.directory`): the loggers write there,
`fit` keeps `checkpoints/last.ckpt` and `checkpoints/best.ckpt` there (written atomically beside
themselves by `RunCheckpointIO`, whatever the filesystem), and `RunRecorder` writes
the resolved `config.yaml` and `run_meta.json` into it. Every `fit` also gets `Preemption`
(random state in checkpoints, a clean stop on SIGTERM/SIGUSR1 with exit status 75, exact resume)
and `NonFiniteGuard` (`--nan_guard stop|skip|off`).

No `link_arguments`: the class count and feature sizes sit at different depths in different
models (`model.init_args.model.init_args.head...` for a teacher, under the student for a
distillation run, per head for verb/noun clips), and jsonargparse rejects every config whose
model lacks a link's target. The modules check them against the data at setup instead, and their
error names the key to set.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import IO, Any, Literal

from jsonargparse import Namespace
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lightning_modules.runs.callbacks import RunCheckpoint, RunRecorder
from lightning_modules.runs.checkpoint_io import RunCheckpointIO
from lightning_modules.runs.directory import (
    CHECKPOINTS,
    META_FILE,
    RUN_NAME_ENV,
    RunDirError,
    RunLocation,
    locate_run,
    lock_folder,
)
from lightning_modules.runs.meta import read_meta
from lightning_modules.runs.nan_guard import NonFiniteGuard
from lightning_modules.runs.preemption import Preemption

DEFAULT_RUNS_ROOT = "outputs/runs"
HELD_LOCKS: list[IO[str]] = []
"""Run folder locks of the command running in this process, released (by the command,
`lightning_modules.commands.lightning`) when it ends."""
STARTED: list[RunLocation] = []
"""The run the command running in this process writes (for the clean-up of a failed start)."""
DEFAULT_LOGGER = {
    "class_path": "pytorch_lightning.loggers.CSVLogger",
    "init_args": {"save_dir": DEFAULT_RUNS_ROOT},
}


class CrossdistillCLI(LightningCLI):
    """LightningCLI whose commands each write into a run directory."""

    def __init__(self, args: list[str]) -> None:
        self.location: RunLocation | None = None
        super().__init__(
            LightningModule,
            LightningDataModule,
            save_config_callback=RunRecorder,
            trainer_defaults={"default_root_dir": DEFAULT_RUNS_ROOT},
            parser_kwargs={"prog": "crossdistill"},
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="Folder of the run under trainer.default_root_dir (default: $WANDB_RUN_ID, else "
            "the start time). Resume a fit with `fit --config RUN_DIR/config.yaml --ckpt_path "
            "last`; evaluate it with `test --config RUN_DIR/config.yaml --ckpt_path best`.",
        )
        parser.add_argument(
            "--nan_guard",
            type=Literal["stop", "skip", "off"],
            default="stop",
            help="On a NaN/Inf training loss or gradient: `stop` the run with a report of the "
            "step, the bad loss terms and the batch's videos and windows (exit status 1), "
            "`skip` the step (no parameter update) and go on, or `off`.",
        )
        parser.add_argument(
            "--on_changed_inputs",
            type=Literal["refuse", "warn"],
            default="refuse",
            help="A resumed fit whose teacher checkpoints or data files (compared by content "
            "hash with run_meta.json) changed since the run started: `refuse` with what "
            "changed, or `warn` and go on.",
        )
        parser.set_defaults({"trainer.logger": DEFAULT_LOGGER})

    def before_instantiate_classes(self) -> None:
        subcommand = str(self.subcommand)
        config = self.config[subcommand]
        location = locate_run(
            subcommand,
            config.run_name,
            config.trainer.default_root_dir,
            config.ckpt_path,
            os.environ,
        )
        _refuse_selection_on_test_videos(subcommand, config)
        if rank_zero_only.rank == 0:  # DDP's other ranks share the folder of rank 0
            HELD_LOCKS.append(lock_folder(location.stage_dir))
            STARTED.append(location)
        config.run_name = location.name
        config.ckpt_path = location.ckpt_path
        previous = None
        if location.resumed:
            previous = read_meta(location.run_dir / META_FILE)
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* not empty")
        wandb_id = ((previous or {}).get("wandb") or {}).get("id")
        config.trainer.logger = _place_loggers(config.trainer.logger, location, wandb_id)
        self.save_config_kwargs = {
            "location": location,
            "subcommand": subcommand,
            "on_changed_inputs": config.get("on_changed_inputs", "refuse"),
        }
        # processes that Lightning starts for DDP run this CLI again and must find the same folder
        os.environ[RUN_NAME_ENV] = location.name
        self.location = location
        if rank_zero_only.rank == 0:
            verb = "resuming" if location.resumed else "writing to"
            print(f"crossdistill {subcommand}: {verb} {location.stage_dir}", file=sys.stderr)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        assert self.location is not None
        trainer_args = self.config_init[str(self.subcommand)]["trainer"]
        callbacks = trainer_args.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        # also outside fit: Lightning wants the callbacks that wrote a checkpoint it loads
        if trainer_args.get("enable_checkpointing") is not False:
            callbacks.append(RunCheckpoint(self.location.run_dir / CHECKPOINTS))
            # exact resume: random state in checkpoints, stop on SIGTERM/SIGUSR1 (fit only)
            callbacks.append(Preemption(self.location.run_dir / CHECKPOINTS / "last.ckpt"))
            from lightning_modules.export import StudentExport  # best/last.student.pt (fit only)

            callbacks.append(StudentExport(self.location.run_dir / CHECKPOINTS))
        nan_guard = self.config[str(self.subcommand)].get("nan_guard", "stop")
        if nan_guard != "off":
            callbacks.append(NonFiniteGuard(nan_guard))
        trainer = super().instantiate_trainer(
            default_root_dir=str(self.location.stage_dir), callbacks=callbacks, **kwargs
        )
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not one the user chose
            trainer.strategy.checkpoint_io = RunCheckpointIO()
        return trainer


def _refuse_selection_on_test_videos(subcommand: str, config: Namespace) -> None:
    """A best checkpoint chosen on the test videos reports a max over epochs on the test set:
    `fit` (which chooses it) and `test --ckpt_path best` refuse a validation subset equal to
    the test subset."""
    data = config.get("data")
    args = data.get("init_args") if isinstance(data, Namespace) else None
    if not isinstance(args, Namespace) or "val_subset" not in args or "test_subset" not in args:
        return
    if args.val_subset is None or args.val_subset != args.test_subset:
        return
    if args.get("val_fraction", 0.0) > 0:
        return
    if subcommand == "fit" or (subcommand == "test" and config.ckpt_path == "best"):
        raise RunDirError(
            f"val_subset and test_subset are both {args.val_subset!r}: the best checkpoint "
            "would be chosen on the test videos (a max over epochs on the test set). Fix: "
            "validate on a part of the training videos (`--data.init_args.val_subset=null "
            "--data.init_args.val_fraction=0.1`), or train without validation "
            "(`--data.init_args.val_subset=null`) and test `--ckpt_path last`"
        )


def _place_loggers(loggers: Any, location: RunLocation, wandb_id: str | None) -> Any:
    """Point the configured loggers at the run's folder; the W&B run is named after the run.

    CSV and TensorBoard write straight into the folder (no `lightning_logs/version_N`), so that
    `trainer.log_dir`, where modules put predictions, is the run's folder for every logger.
    """
    if isinstance(loggers, list):
        return [_place_loggers(one, location, wandb_id) for one in loggers]
    if not isinstance(loggers, Namespace) or "class_path" not in loggers:
        return loggers
    cls = _import(loggers.class_path)
    args = loggers.init_args
    folder = str(location.stage_dir)
    if issubclass(cls, WandbLogger):
        args.save_dir = folder
        # forced, not defaulted: jsonargparse carries a replaced CSVLogger's `name` over to W&B
        stage = location.stage_dir.name if location.stage_dir != location.run_dir else None
        args.name = f"{location.name}-{stage}" if stage else location.name
        if location.resumed and args.id is None and wandb_id:
            args.id = wandb_id
    elif issubclass(cls, CSVLogger | TensorBoardLogger):
        args.save_dir, args.name, args.version = folder, "", ""
        # the run folder is never empty (its lock file); an earlier metrics.csv is kept below
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* not empty")
        if location.resumed and issubclass(cls, CSVLogger) and rank_zero_only.rank == 0:
            _keep_previous_metrics(location)
    return loggers


def _keep_previous_metrics(location: RunLocation) -> None:
    """CSVLogger deletes a `metrics.csv` it finds; keep an interrupted fit's as `metrics.N.csv`."""
    metrics = location.run_dir / "metrics.csv"
    if metrics.is_file():
        number = len(list(location.run_dir.glob("metrics.*.csv")))
        metrics.rename(location.run_dir / f"metrics.{number}.csv")


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)
