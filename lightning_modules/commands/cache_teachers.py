"""`crossdistill cache-teachers`: each frozen teacher of a distillation config run once.

Takes the config files of a distillation `fit` (the `data:` block and the DistillModule's
`teachers`, `teacher_cache` and objectives), loads every teacher checkpoint, and builds the cache
of each (`lightning_modules.teacher_cache`) under `<teacher_cache>/<teacher>/`, unless it is up
to date (`--force` rebuilds it), for `teacher_mode: cached`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

HELP = "run a distillation config's frozen teachers once, for teacher_mode: cached"


def build_parser() -> ArgumentParser:
    from datamodules.datamodule import MultimodalDataModule
    from lightning_modules.distill import DistillModule

    parser = ArgumentParser(
        prog="crossdistill cache-teachers",
        description="Run each frozen teacher of a distillation config once over whole videos and "
        "write its per-step outputs, for `teacher_mode: cached`. Takes the config files of "
        "`crossdistill fit`.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="config file(s), as for fit")
    parser.add_subclass_arguments(MultimodalDataModule, "data", required=True)
    parser.add_subclass_arguments(DistillModule, "model", required=True)
    for key in ("seed_everything", "trainer", "optimizer", "lr_scheduler", "ckpt_path"):
        parser.add_argument(f"--{key}", type=Any, default=None, help="ignored here")
    parser.add_argument("--run_name", type=Any, default=None, help="ignored here")
    parser.add_argument("--force", type=bool, default=False, help="rebuild up-to-date caches")
    return parser


def main(argv: list[str]) -> int:
    from lightning_modules.distill import load_frozen_teacher
    from lightning_modules.teacher_cache import (
        TeacherCacheError,
        build_cache,
        objective_taps,
        open_cache,
        rebuild_command,
        teacher_modalities,
        usable_records,
    )

    parser = build_parser()
    config = parser.parse_args(argv)
    command = rebuild_command(["fit", *argv])  # this command, without the trainer's flags
    checkpoints = {n: Path(p) for n, p in config.model.init_args.teachers.items()}
    teachers = {name: load_frozen_teacher(path) for name, path in checkpoints.items()}
    needed = sorted({m for t in teachers.values() for m in teacher_modalities(t)})
    config.data.init_args.load = needed  # the teachers' inputs, whatever the student loads
    config.model.init_args.teacher_mode = "cached"  # the module is read for its objectives only
    built = parser.instantiate(config)
    datamodule, module = built.data, built.model
    taps = objective_taps(module.objectives.values())
    records = usable_records(datamodule)
    for name, teacher in teachers.items():
        folder = Path(module.teacher_cache) / name
        if not config.force:
            try:
                source = open_cache(
                    name, checkpoints[name], datamodule, folder, taps, command, augmentation=False
                )
                if not [p for r in records for p in source.check(r)]:
                    print(f"cache-teachers: {name}: up to date in {folder}")
                    continue
            except TeacherCacheError:
                pass
        manifest = build_cache(
            teacher, checkpoints[name], datamodule, folder, records, taps, command
        )
        channels = sum(width for _, width in manifest["layout"])
        print(
            f"cache-teachers: {name}: {len(manifest['videos'])} videos, {channels} channels "
            f"({', '.join(field for field, _ in manifest['layout'])}) in {folder}"
        )
    return 0
