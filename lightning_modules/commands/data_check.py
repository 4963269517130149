"""`crossdistill data-check`: a pre-flight report on a dataset config, before any training.

Takes the same `--config` files and `--data.*` overrides as `crossdistill fit` (only the `data`
part is used), builds the `MultimodalDataModule` and runs the checks of `datamodules.data_check`
over every video of the train, val and test subsets with every modality. The exit status is 1
when anything would stop training (with `missing: skip`, broken videos are only left out, so
they stop it only when a subset is left empty), else 0.

With a model in the configs (a teacher or distillation config composed after the data, as for
fit), it also checks that the model fits the data: the modalities it reads, its feature widths
and its class count (`lightning_modules.model_data_check`).

The check never writes. With a `synthetic:` block whose benchmark is not (yet) under `root`, it
says what `fit` would do there (generate it, or refuse the folder) instead of generating it.
"""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

HELP = "pre-flight check of a dataset config: files, lengths, labels"

# top-level keys of a LightningCLI config that data-check reads past
_OTHER_KEYS = ("seed_everything", "trainer", "model", "optimizer", "lr_scheduler", "ckpt_path")


def data_config_parser(prog: str, description: str, with_model: bool = False) -> ArgumentParser:
    """A parser for the `data:` part of `crossdistill fit`'s config files and overrides, for
    commands that need only the data (the other top-level keys are read past); `with_model`
    also parses the optional `model:` part."""
    from datamodules.datamodule import MultimodalDataModule

    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="config file(s), as for fit")
    parser.add_subclass_arguments(MultimodalDataModule, "data", required=True)
    ignored = _OTHER_KEYS
    if with_model:
        from lightning_modules.task_module import TaskModule

        parser.add_subclass_arguments(TaskModule, "model", required=False)
        ignored = tuple(key for key in _OTHER_KEYS if key != "model")
    for key in ignored:
        parser.add_argument(f"--{key}", type=Any, default=None, help="ignored here")
    return parser


def build_parser() -> ArgumentParser:
    parser = data_config_parser(
        "crossdistill data-check",
        "Pre-flight check of a dataset config: files, lengths, labels. Takes the config files "
        "of `crossdistill fit` and reports what would break training, with fixes; with a model "
        "config among them, also whether the model fits the data.",
        with_model=True,
    )
    parser.add_argument(
        "--deep",
        type=bool,
        default=False,
        help="decode every frame of every video (slow), to find damage inside a file; the "
        "default decodes enough to prove each file complete",
    )
    return parser


def build_data(parser: ArgumentParser, config: Any, prog: str) -> Any:
    """The datamodule of a config parsed by `data_config_parser`; None when the config cannot
    be used, after printing why (a data or annotation error names the file and the fix; any
    other error is a bug and raises, as every error does with `--debug`)."""
    from datamodules.annotations import AnnotationError
    from datamodules.errors import debugging, find_cause
    from datamodules.sources.base import DataError

    try:
        return parser.instantiate(config).data
    except Exception as err:
        found = find_cause(err, (DataError, AnnotationError))
        if found is None or debugging():
            raise
        print(f"{prog}: the data config cannot be used: {found}", file=sys.stderr)
        return None


def main(argv: list[str]) -> int:
    from datamodules.data_check import run_checks
    from datamodules.synthetic.generator import SyntheticConfig, root_problem

    parser = build_parser()
    config = parser.parse_args(argv)
    deep = config.pop("deep")
    data_args = config.data.init_args
    if data_args.get("synthetic") is not None:
        synthetic = SyntheticConfig(**vars(data_args.synthetic))
        problem = root_problem(data_args.root, synthetic)
        if problem is not None:
            print(
                f"data-check: {problem}. The pre-flight check writes nothing. Fix: generate it "
                f"with `crossdistill synthetic --out {data_args.root}` and the options of the "
                "config's `synthetic:` block (fit and test generate it themselves, into an empty "
                "folder or over a synthetic benchmark they made)",
                file=sys.stderr,
            )
            return 1
        data_args.synthetic = None  # complete: read it as it is
    datamodule = build_data(parser, config.clone().update(None, "model"), "data-check")
    if datamodule is None:
        return 1
    for source in datamodule.modalities.values():
        source.deep_check = deep
    blocking = run_checks(datamodule, print)
    if config.get("model") is not None and not blocking:
        blocking += _model_problems(config.model, datamodule)
    return 1 if blocking else 0


def _model_problems(model: Any, datamodule: Any) -> list[str]:
    """The model config against the data (after the data's own checks passed)."""
    from lightning_modules.model_data_check import model_config_problems

    name = model.class_path.rpartition(".")[2]
    problems = model_config_problems(model, datamodule)
    if not problems:
        print(f"\nmodel: {name} fits the data (modalities, widths, classes)")
    for problem in problems:
        print(f"\nmodel: {name} does not fit the data: {problem}")
    return problems
