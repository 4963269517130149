"""`crossdistill cache-teachers`: each frozen teacher of a distillation config run once.

Takes the config files of a distillation `fit` (the `data:` block and the DistillModule's
`teachers`, `teacher_source` and objectives), loads every teacher checkpoint, and builds the
cache of each (`lightning_modules.teachers.cache`) under `<folder>/<teacher>/` (the folder of a
`Cached` teacher source, else its default), unless it is up to date (`--force` rebuilds it),
for `teacher_source: lightning_modules.teachers.Cached`. The model config is read as settings
(teacher checkpoints, the objectives' taps, the cache folder); no student is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

HELP = "run a distillation config's frozen teachers once, for cached teachers"


def build_parser() -> ArgumentParser:
    from datamodules.datamodule import MultimodalDataModule
    from lightning_modules.distill import DistillModule

    parser = ArgumentParser(
        prog="crossdistill cache-teachers",
        description="Run each frozen teacher of a distillation config once over whole videos and "
        "write its per-step outputs, for `teacher_source: lightning_modules.teachers.Cached`. "
        "Takes the config files of `crossdistill fit`.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="config file(s), as for fit")
    parser.add_subclass_arguments(MultimodalDataModule, "data", required=True)
    parser.add_subclass_arguments(DistillModule, "model", required=True)
    for key in ("seed_everything", "trainer", "optimizer", "lr_scheduler", "ckpt_path"):
        parser.add_argument(f"--{key}", type=Any, default=None, help="ignored here")
    parser.add_argument("--run_name", type=Any, default=None, help="ignored here")
    parser.add_argument("--force", type=bool, default=False, help="rebuild up-to-date caches")
    return parser


def cache_folder(source: Namespace | None) -> Path:
    """The folder of the model's teacher source when it is `Cached`, else `Cached`'s default."""
    from lightning_modules.teachers import Cached, TeacherSource

    parser = ArgumentParser()
    parser.add_argument("--source", type=TeacherSource | None)
    given = {"source": source.as_dict() if isinstance(source, Namespace) else source}
    built = parser.instantiate_classes(parser.parse_object(given)).source
    return Path((built if isinstance(built, Cached) else Cached()).folder)


def data_module(config: Namespace) -> Any:
    """The datamodule of the parsed config, alone (the model is read as settings only)."""
    from lightning_modules.commands.data_check import data_config_parser

    parser = data_config_parser("crossdistill cache-teachers", "")
    return parser.instantiate_classes(parser.parse_object({"data": config.data.as_dict()})).data


def main(argv: list[str]) -> int:
    from lightning_modules.teachers import load_frozen_teacher, teacher_modalities
    from lightning_modules.teachers.cache import (
        TeacherCacheError,
        build_cache,
        objective_taps,
        open_cache,
        rebuild_command,
        usable_records,
    )

    parser = build_parser()
    config = parser.parse_args(argv)
    command = rebuild_command(["fit", *argv])  # this command, as a fit would name it
    settings = config.model.init_args
    checkpoints = {n: Path(p) for n, p in settings.teachers.items()}
    taps = objective_taps(getattr(o.init_args, "tap", None) for o in settings.objectives.values())
    folder = cache_folder(settings.teacher_source)
    teachers = {name: load_frozen_teacher(path) for name, path in checkpoints.items()}
    needed = sorted({m for t in teachers.values() for m in teacher_modalities(t)})
    config.data.init_args.load = needed  # the teachers' inputs, whatever the student loads
    datamodule = data_module(config)
    records = usable_records(datamodule)
    for name, teacher in teachers.items():
        if not config.force:
            try:
                source = open_cache(
                    name,
                    checkpoints[name],
                    datamodule,
                    folder / name,
                    taps,
                    command,
                    augmentation=False,
                )
                if not [p for r in records for p in source.check(r)]:
                    print(f"cache-teachers: {name}: up to date in {folder / name}")
                    continue
            except TeacherCacheError:
                pass
        manifest = build_cache(
            teacher, checkpoints[name], datamodule, folder / name, records, taps, command
        )
        channels = sum(width for _, width in manifest["layout"])
        print(
            f"cache-teachers: {name}: {len(manifest['videos'])} videos, {channels} channels "
            f"({', '.join(field for field, _ in manifest['layout'])}) in {folder / name}"
        )
    return 0
