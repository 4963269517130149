"""The single `crossdistill` command.

Lightning's own subcommands (`fit`, `validate`, `test`, `predict`) go to LightningCLI, with
models and datamodules chosen by `class_path` in YAML. The project's subcommands are listed in
`PROJECT_COMMANDS` as `module:function` strings and imported only when called, so that
`crossdistill synthetic` does not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from datamodules.errors import DEBUG_ENV

LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a model (teacher or distilled student)",
    "validate": "run one validation pass",
    "test": "evaluate on the test subset and write predictions",
    "predict": "write predictions for a subset",
}

# name -> ("module:function", one-line help). Each function takes argv (without the name)
# and returns an exit status.
PROJECT_COMMANDS: dict[str, tuple[str, str]] = {
    "synthetic": (
        "datamodules.synthetic.cli:main",
        "generate the synthetic multimodal benchmark on disk",
    ),
    "evaluate": ("lightning_modules.evaluate:main", "score prediction files against ground truth"),
    "data-check": (
        "datamodules.data_check:main",
        "pre-flight check of a dataset config: files, lengths, labels",
    ),
    "extract-features": (
        "lightning_modules.feature_extraction:main",
        "write a trained encoder's T x D features for whole videos",
    ),
    "cache-teachers": (
        "lightning_modules.teacher_cache:main",
        "run a distillation config's frozen teachers once, for teacher_mode: cached",
    ),
    "reproduce": (
        "lightning_modules.reproduce.cli:main",
        "train and test a paper table's rows (configs/experiments/), write results.md/json/png",
    ),
    "sweep": (
        "lightning_modules.sweep.cli:main",
        "check a W&B sweep file, or run a sweep offline with W&B's own engine",
    ),
}


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


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_lightning(argv: list[str]) -> int:
    """Run a Lightning command in its run directory (`lightning_modules.runs`)."""
    from lightning_modules.runs.cli import run

    return run(argv)


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
        return int(_load(PROJECT_COMMANDS[command][0])(rest) or 0)
    if command in LIGHTNING_COMMANDS:
        return run_lightning(args)
    print(f"crossdistill: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
