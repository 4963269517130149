"""`crossdistill fit|validate|test|predict`: Lightning's commands, each in its run directory.

The parser is `CrossdistillCLI` (`lightning_modules.runs.lightning_cli`), LightningCLI with run
directories; it imports Lightning, so it is imported when a command runs. A mistake in the
command, config or data (`user_errors`) ends the command with its message, which names the fix,
instead of a traceback (`crossdistill --debug` shows both): exit status 2 for a run folder that
cannot be used, 1 otherwise; a preempted fit exits with 75.
"""

from __future__ import annotations

import os
import sys

from datamodules.errors import debugging, find_cause
from lightning_modules.runs.directory import (
    CHECKPOINTS,
    CONFIG_FILE,
    RUN_NAME_ENV,
    RunDirError,
    RunLocation,
)

COMMANDS: dict[str, str] = {
    "fit": "train a model (teacher or distilled student)",
    "validate": "run one validation pass",
    "test": "evaluate on the test subset and write predictions",
    "predict": "write predictions for a subset",
}
"""name -> one-line help."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean a mistake in the command, config or data; their messages name the fix."""
    from datamodules.annotations import AnnotationError
    from datamodules.errors import ConfigError
    from datamodules.sources.base import DataError
    from lightning_modules.runs.checkpoint_io import DiskFullError
    from lightning_modules.runs.nan_guard import NonFiniteError
    from lightning_modules.task_module import CheckpointMismatchError

    return (
        RunDirError,
        DataError,
        AnnotationError,
        CheckpointMismatchError,
        NonFiniteError,
        FileNotFoundError,
        DiskFullError,
        ConfigError,
    )


def _unblock_failed_start(location: RunLocation) -> None:
    """A new fit that stopped on a user error before its first checkpoint leaves its config as
    `config.failed.yaml`, so that the same --run_name can start again (nothing is deleted)."""
    if location.resumed or location.stage_dir != location.run_dir:
        return
    if any((location.run_dir / CHECKPOINTS).glob("*.ckpt")):
        return
    config = location.run_dir / CONFIG_FILE
    if config.is_file():
        config.replace(location.run_dir / "config.failed.yaml")


def run(argv: list[str]) -> int:
    """Run one Lightning command; `argv` starts with the subcommand."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from lightning_modules.runs.lightning_cli import HELD_LOCKS, STARTED, CrossdistillCLI
    from lightning_modules.runs.preemption import PREEMPTED_EXIT_CODE, Preempted

    errors = user_errors()  # imported first: the modules' classes appear in --help
    previous = os.environ.get(RUN_NAME_ENV)
    try:
        CrossdistillCLI(argv)
    except (Preempted, SIGTERMException) as stop:
        print(f"crossdistill {argv[0]}: preempted: {stop or 'SIGTERM'}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except Exception as err:
        found = find_cause(err, errors)
        if found is None or debugging():
            raise
        print(f"crossdistill {argv[0]}: {found}", file=sys.stderr)
        if isinstance(found, RunDirError):
            return 2
        for location in STARTED:
            _unblock_failed_start(location)
        return 1
    finally:
        STARTED.clear()
        while HELD_LOCKS:
            HELD_LOCKS.pop().close()
        if previous is None:
            os.environ.pop(RUN_NAME_ENV, None)
        else:
            os.environ[RUN_NAME_ENV] = previous
    return 0


def main(argv: list[str]) -> int:
    """`argv` starts with the command's name (`fit`, `validate`, `test` or `predict`)."""
    return run(argv)
