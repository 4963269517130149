"""`crossdistill reproduce TABLE [--data synthetic|DATA.yaml [OVERLAY.yaml ...]] [--rows A,B]
[--seeds N] [--out DIR] [--smoke] [--jobs N] [--threads T] [--publish DIR]`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

HELP = "train and test a paper table's rows (configs/experiments/), write results.md/json/png"


def build_parser() -> argparse.ArgumentParser:
    from lightning_modules.reproduce.recipe import RECIPES
    from lightning_modules.reproduce.runner import SYNTHETIC

    tables = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    parser = argparse.ArgumentParser(
        prog="crossdistill reproduce",
        description="Train and test every row of a paper table (teachers first, reused across "
        "rows and seeds), then write results.json, results.md and results.png. Rerunning skips "
        "finished rows and resumes interrupted ones.",
    )
    parser.add_argument(
        "table", help=f"a recipe in configs/experiments/ ({', '.join(tables)}) or a YAML path"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        help=f"'{SYNTHETIC}' (generated under OUT/data) or the data config(s) of your own "
        "features, composed in order (e.g. tsu_i3d.yaml tsu_i3d_cv.yaml); default: the synthetic "
        "benchmark, or the table's own data config for a table of a real dataset (no "
        "`synthetic:` section)",
    )
    parser.add_argument(
        "--rows",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        help="comma-separated rows to run (with their teachers); default: every row",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per row (default: the recipe's)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: outputs/TABLE)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny benchmark and one short epoch per run (a check)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (default 1: the fastest "
        "on a shared CPU; the results do not depend on --jobs, they do on --threads)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=None, help="runs side by side, each once its teachers and "
        "features are done (default: the CPU cores over --threads; 1 runs in this process)",
    )  # fmt: skip
    parser.add_argument(
        "--publish", type=Path, default=None, metavar="DIR", help="then copy what a reader "
        "needs (results.{json,md,png}, each run's test metrics and predictions; no checkpoints) "
        "to DIR, e.g. experiments/results/TABLE (what the notebooks and the claims test read)",
    )  # fmt: skip
    return parser


def table_data(recipe: Any) -> list[str]:
    """What a table trains on without `--data`: the synthetic benchmark it generates, or, for a
    table of a real dataset (no `synthetic:` section), its own data config(s)."""
    from lightning_modules.reproduce.runner import SYNTHETIC

    return [SYNTHETIC] if recipe.synthetic else [str(path) for path in recipe.data]


def main(argv: list[str]) -> int:
    from lightning_modules.reproduce import publish, results
    from lightning_modules.reproduce.recipe import RecipeError, load_recipe
    from lightning_modules.reproduce.runner import ReproduceError, TableRunner

    args = build_parser().parse_args(argv)
    ran = 0  # jobs this invocation finished
    try:
        recipe = load_recipe(args.table, smoke=args.smoke)
        if args.seeds is not None:
            recipe = dataclasses.replace(recipe, seeds=args.seeds)
        if args.rows:
            recipe = recipe.only(args.rows)
        out = args.out or Path("outputs") / (recipe.table + ("-smoke" if args.smoke else ""))
        data = args.data or table_data(recipe)
        runner = TableRunner(recipe, out, data)
        left_out = [row.name for row in recipe.rows if row not in runner.recipe.rows]
        if left_out:
            print(f"{recipe.table}: rows {left_out} keep their own data config: left out")
        recipe = runner.recipe
        if args.publish is not None:  # before hours of training, not after
            publish.check_destination(out, args.publish)
        started, source = time.perf_counter(), publish.source_commit()
        lanes = args.jobs or max(1, (os.cpu_count() or 1) // max(1, args.threads))
        done_before = runner.jobs_done()
        try:
            # the published run's job times order the jobs and give a first ETA: the same table
            # on the same benchmark only (a smoke run or your own data take other times)
            same = runner.synthetic and not args.smoke
            runner.run(
                lanes,
                max(1, args.threads),
                publish.published_job_seconds(recipe.table) if same else {},
            )
        finally:  # a failed or interrupted run keeps the record of what it did
            elapsed = time.perf_counter() - started
            command = " ".join(["crossdistill reproduce", *argv])
            ran = runner.jobs_done() - done_before
            publish.record_invocation(
                out, source, elapsed, ran, lanes, max(1, args.threads), command
            )
    except (RecipeError, ReproduceError, publish.PublishError) as error:
        print(f"crossdistill reproduce: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"crossdistill reproduce: interrupted after {ran} job(s); the finished ones are kept "
            "and an interrupted fit resumes from its checkpoint: rerun the same command",
            file=sys.stderr,
        )
        return 130
    seeds = {row.name: runner.seeds(row) for row in recipe.rows}
    table = results.collect(recipe, runner.results, " ".join(data), seeds)
    table["provenance"] = publish.provenance(out)
    markdown = results.write(table, out, recipe.columns)
    print()
    print(markdown)
    print(f"{recipe.table}: {elapsed / 60:.1f} min; results in {out}/results.{{json,md,png}}")
    if args.publish is not None:
        copied = publish.publish(out, args.publish)
        print(f"{recipe.table}: {len(copied)} files published to {args.publish}")
    return 0
