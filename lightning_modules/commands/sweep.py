"""`crossdistill sweep validate|run FILE`: W&B sweep files, checked and run without a W&B server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "check a W&B sweep file, or run a sweep offline with W&B's own engine"

DESCRIPTION = """\
W&B sweep files (configs/sweeps/*.yaml): method, metric, parameters with flat dotted names
(model.init_args.lr) and a command that runs `crossdistill fit --config ... ${args}`.

  validate FILE   draw parameter sets with W&B's sweep engine, build each command as
                  `wandb agent` would, and dry-run it with --print_config: a misspelt key
                  fails here (exit status 1, naming the key), not after a launch
  run FILE        run the trials here, one subprocess each with the agent's command line,
                  as offline W&B runs (`wandb sync` uploads them later); each trial's metric
                  is read from its W&B run and given back to the engine (grid, random,
                  bayes); prints a leaderboard. Resumable: trials done in --dir are kept.

Words after `--` are appended to every trial's command (after ${args}, so they win), e.g.
`-- --data.init_args.root /data/charades`. On a machine that reaches W&B, the same file runs
with `wandb sweep FILE` and `wandb agent ID`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossdistill sweep",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="action", required=True)
    check = commands.add_parser("validate", help="dry-run a few drawn trials of a sweep file")
    check.add_argument("file", type=Path)
    check.add_argument("--draws", type=int, default=3, help="parameter sets to check (3)")
    run = commands.add_parser("run", help="run a sweep's trials here, offline")
    run.add_argument("file", type=Path)
    run.add_argument(
        "--count", type=int, required=True, help="trials in all, earlier ones included"
    )
    run.add_argument(
        "--dir", type=Path, default=None, help="trials and logs (outputs/sweeps/<file name>)"
    )
    return parser


def main(argv: list[str]) -> int:
    from lightning_modules.sweep.dry_run import CommandError
    from lightning_modules.sweep.engine import SweepFileError, load_sweep
    from lightning_modules.sweep.runner import run_sweep

    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    args = build_parser().parse_args(argv)
    try:
        sweep = load_sweep(args.file)
        if args.action == "validate":
            return validate(sweep, args.file, args.draws, extra)
        folder = args.dir or Path("outputs/sweeps") / args.file.stem
        name = str(sweep.get("name") or args.file.stem)
        return run_sweep(sweep, name, args.count, folder, extra)
    except (SweepFileError, CommandError) as err:
        print(f"crossdistill sweep {args.action}: {err}", file=sys.stderr)
        return 1


def validate(sweep: dict, path: Path, draws: int, extra: list[str]) -> int:
    """Dry-run `draws` drawn trials; 1 at the first command crossdistill rejects."""
    from lightning_modules.sweep.agent import agent_command
    from lightning_modules.sweep.dry_run import CommandError, dry_run
    from lightning_modules.sweep.engine import draw
    from lightning_modules.sweep.runner import trial_env

    folder = Path("outputs/sweeps") / path.stem  # for ${args_json_file}, as `run` uses
    for number, params in enumerate(draw(sweep, [], draws), 1):
        command = [*agent_command(sweep, params, folder / f"validate-{number}.json"), *extra]
        print(f"{path} draw {number}: {' '.join(command)}")
        try:
            dry_run(command, params, trial_env(f"validate{number}", path.stem))
        except CommandError as err:
            raise CommandError(f"{path} draw {number}: {err}") from err
    print(f"{path}: OK")
    return 0
