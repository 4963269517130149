"""The single `crossdistill` command, and one module per subcommand.

The commands sit on top of the library (`datamodules/`, the rest of `lightning_modules/`): each
module here holds one command's argument parser, its `main(argv) -> int` and its one-line help
(`HELP`; `lightning.COMMANDS` for the four Lightning commands), and imports the library it
drives. The library never imports this package; only the drivers of other commands do
(`lightning_modules.reproduce.runner` runs `fit`, `test` and `extract-features` in its own
process).

Lightning's own subcommands (`fit`, `validate`, `test`, `predict`, in `lightning`) go to
LightningCLI, with models and datamodules chosen by `class_path` in YAML. The project's
subcommands are listed in `PROJECT_COMMANDS` with their `main` functions. A command module
imports only argparse/jsonargparse and small modules at its top and the torch/Lightning-heavy
library inside its `main`, so that `crossdistill --help` and `crossdistill synthetic` do not pay
for importing Lightning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from datamodules.errors import DEBUG_ENV
from lightning_modules.commands import (
    cache_teachers,
    data_check,
    evaluate,
    extract_features,
    flow,
    frame_store,
    lightning,
    reproduce,
    sweep,
    synthetic,
)

Command = Callable[[list[str]], int]
"""A command's `main`: takes argv (without the command's name), returns an exit status."""

LIGHTNING_COMMANDS: dict[str, str] = lightning.COMMANDS
"""name -> one-line help; each runs `lightning.main` with argv starting with the name."""

PROJECT_COMMANDS: dict[str, tuple[Command, str]] = {
    "synthetic": (synthetic.main, synthetic.HELP),
    "evaluate": (evaluate.main, evaluate.HELP),
    "data-check": (data_check.main, data_check.HELP),
    "frame-store": (frame_store.main, frame_store.HELP),
    "extract-features": (extract_features.main, extract_features.HELP),
    "flow": (flow.main, flow.HELP),
    "cache-teachers": (cache_teachers.main, cache_teachers.HELP),
    "reproduce": (reproduce.main, reproduce.HELP),
    "sweep": (sweep.main, sweep.HELP),
}
"""name -> (its `main`, one-line help)."""


def _usage() -> str:
    width = max(len(name) for name in [*LIGHTNING_COMMANDS, *PROJECT_COMMANDS])
    lines = ["usage: crossdistill [--debug] COMMAND [options]   (crossdistill COMMAND --help)"]
    lines.append("  --debug: print a traceback with the message of a configuration or data error")
    lines.append("")
    lines.append("Lightning commands:")
    lines += [f"  {name:<{width}}  {text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines.append("")
    lines.append("Project commands:")
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in PROJECT_COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # a user error's traceback as well as its message
        args.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command in PROJECT_COMMANDS:
        return int(PROJECT_COMMANDS[command][0](rest) or 0)
    if command in LIGHTNING_COMMANDS:
        return lightning.main(args)
    print(f"crossdistill: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2
