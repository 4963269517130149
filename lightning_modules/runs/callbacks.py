"""The callbacks that fill a run directory: its checkpoints, its config and its metadata."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import SaveConfigCallback

from lightning_modules.runs.directory import CONFIG_FILE, META_FILE, RunDirError, RunLocation
from lightning_modules.runs.meta import changed_inputs, collect_meta, read_meta, write_meta


class RunCheckpoint(ModelCheckpoint):
    """`last.ckpt` (at every epoch end), and `best.ckpt` on `val/<task.main_metric>` (maximised),
    in `dirpath`.

    The monitored name is read at fit start, after the module's `setup`, because a task may settle
    its main metric there (verb/noun clips switch to `action_top1`). The state key is fixed, so a
    resumed fit finds the best score of the interrupted one whatever the monitor is called.
    A module without a `task` gets `last.ckpt` only.
    """

    def __init__(self, dirpath: Path) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="best",
            save_last=True,
            save_top_k=1,
            mode="max",
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        task = getattr(pl_module, "task", None)
        self.monitor = f"val/{task.main_metric}" if task is not None else None
        if self.monitor is None:
            self.save_top_k = 0

    # Lightning 2.6 writes last.ckpt only when it writes a top-k checkpoint at the same step, so
    # last.ckpt would stay at the best epoch; a resume point must be the latest one

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last(trainer)

    def _save_last(self, trainer: pl.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # skips what was saved at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RunRecorder(SaveConfigCallback):
    """Writes `config.yaml` and `run_meta.json` into the run folder and sends the config to loggers.

    The whole resolved config goes to every logger once, nested as in the YAML files (for W&B:
    the run's config). Lightning would afterwards log the model's and the datamodule's own
    hyperparameters at the top level, over keys of the same names (`model`, `task`, ...), so
    that is switched off.
    """

    def __init__(
        self,
        *args: Any,
        location: RunLocation,
        subcommand: str,
        on_changed_inputs: str = "refuse",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.location = location
        self.subcommand = subcommand
        self.on_changed_inputs = on_changed_inputs

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        pl_module._log_hyperparams = False
        if trainer.datamodule is not None:
            trainer.datamodule._log_hyperparams = False
        if trainer.is_global_zero:
            folder = self.location.stage_dir
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, folder / CONFIG_FILE, skip_unset=False, overwrite=True, multifile=False
            )
            config = yaml.safe_load(self.parser.dump(self.config, skip_unset=False))
            meta = collect_meta(trainer, config, self.subcommand, self.location)
            if self.location.resumed:
                self.check_inputs(read_meta(folder / META_FILE), meta)
            write_meta(folder / META_FILE, meta)
            for logger in trainer.loggers:
                logger.log_hyperparams(config)
                logger.save()
        self.already_saved = True

    def check_inputs(self, previous: dict[str, Any] | None, meta: dict[str, Any]) -> None:
        """A resumed fit must read the teachers and data its earlier sessions read."""
        changes = changed_inputs(previous or {}, meta)
        if not changes:
            return
        what = "; ".join(changes)
        if self.on_changed_inputs == "warn":
            warnings.warn(
                f"resuming {self.location.run_dir} with changed inputs: {what}", stacklevel=1
            )
            return
        raise RunDirError(
            f"{self.location.run_dir} was trained on other inputs than this resume would read: "
            f"{what}. Fix: start a new run (another --run_name), restore the original files, "
            "or resume anyway with --on_changed_inputs warn"
        )
