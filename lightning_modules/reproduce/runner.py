"""Run a table recipe: benchmark, preparation, then every row and seed, each once.

Everything goes through the same commands a user types (`crossdistill fit`, `test`,
`extract-features`), run in this process, into `OUT/runs/<row>-seed<N>/` run directories. A
finished row seed leaves `OUT/results/<row>/seed<N>.json` (its test metrics); a finished
preparation step leaves `OUT/runs/<step>/DONE` or its features' `meta.json`. Rerunning skips what
is finished and resumes an interrupted fit from its `last.ckpt`, so `reproduce` can be stopped
and started again at any point.
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodules.sources.integrity import write_json_atomic
from datamodules.synthetic.generator import SyntheticConfig, generate_benchmark, is_complete
from lightning_modules.reproduce.recipe import (
    CONFIGS_ROOT,
    PrepareStep,
    Recipe,
    RecipeError,
    Row,
)

SYNTHETIC = "synthetic"
PRETRAINING = "synthetic_pretraining"
DONE = "DONE"


class ReproduceError(RuntimeError):
    """A command of the table failed; the message names the row and its run directory."""


@dataclass(frozen=True)
class Job:
    """One unit of work: the benchmark, a preparation step or a row's seed, with the names of
    the jobs whose outputs it reads."""

    name: str
    run: Callable[[], None]
    done: Callable[[], bool]
    needs: tuple[str, ...] = ()


def quiet_lightning() -> None:
    """Keep the terminal to progress and results: no model summaries or hardware banners."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _lightning(argv: list[str]) -> None:
    from lightning_modules.commands.lightning import run

    status = run(argv)
    if status != 0:
        raise ReproduceError(f"crossdistill {' '.join(argv)} exited with {status}")


def _extract(argv: list[str]) -> None:
    from lightning_modules.commands.extract_features import main

    status = main(argv)
    if status != 0:
        raise ReproduceError(f"crossdistill extract-features {' '.join(argv)} exited with {status}")


class TableRunner:
    """Trains and tests what a recipe's rows need, in order, under `out`."""

    def __init__(self, recipe: Recipe, out: Path, data: str | Sequence[str] = SYNTHETIC) -> None:
        """`data`: `synthetic`, or data config files composed in order (a base, then overlays)."""
        self.out = Path(out)
        files = [data] if isinstance(data, str) else list(data)
        self.synthetic = files == [SYNTHETIC]
        self.data_configs = recipe.data if self.synthetic else tuple(Path(f) for f in files)
        if not self.synthetic:
            for path in self.data_configs:
                if not path.is_file():
                    raise RecipeError(f"--data {path}: no such data config")
            recipe = recipe.on_table_data()
        self.recipe = recipe
        """The rows this run trains: on `--data`, those of the table's data config only."""
        self.runs = self.out / "runs"
        self.results = self.out / "results"
        self.benchmark = self.out / "data" / SYNTHETIC
        self.pool = self.out / "data" / PRETRAINING

    # ----------------------------------------------------------------- plan
    def jobs(self) -> list[Job]:
        """Benchmark, preparation steps (with the rows they extract features from) when a row
        reads what they prepare, then rows; every row after its teachers. Each job names the
        jobs it needs: a row its teachers' first seeds, the benchmark, and the preparation when
        it reads the table's prepared data (the features); a preparation step the pool it fits
        on or the job it extracts from."""
        jobs: list[Job] = []
        scheduled: set[str] = set()
        base = ("synthetic benchmark",) if self.synthetic else ()
        prepared: tuple[str, ...] = ()

        def schedule(row: Row, needs: tuple[str, ...]) -> None:
            for teacher in row.teachers.values():
                schedule(self.recipe.row(teacher), needs)
            if row.name not in scheduled:
                scheduled.add(row.name)
                teachers = tuple(f"{t} seed 0" for t in row.teachers.values())
                reads = prepared if self.recipe.reads_prepared(row) else ()
                jobs.extend(
                    self._row_job(row, seed, (*needs, *reads, *teachers))
                    for seed in range(self.seeds(row))
                )

        if self.synthetic:
            jobs.append(
                _benchmark_job("synthetic benchmark", self.benchmark, self.recipe.synthetic)
            )
            pool = base
            # the preparation (and the pool its backbones train on) only for rows that read it
            preparing = any(self.recipe.reads_prepared(row) for row in self.recipe.rows)
            if self.recipe.pretraining and preparing:
                jobs.append(_benchmark_job("pretraining pool", self.pool, self.recipe.pretraining))
                pool = ("pretraining pool",)
            rows = {row.name for row in self.recipe.rows}
            for step in self.recipe.prepare if preparing else ():
                if step.extract in rows:
                    schedule(self.recipe.row(step.extract), base)
                source = f"{step.extract} seed 0" if step.extract in rows else step.extract
                needs = (*base, source) if step.extract is not None else pool
                jobs.append(self._prepare_job(step, needs))
            prepared = tuple(step.name for step in self.recipe.prepare)
        for row in self.recipe.rows:  # the table's order, teachers pulled forward
            schedule(row, base)
        return jobs

    def _row_job(self, row: Row, seed: int, needs: tuple[str, ...]) -> Job:
        return Job(
            f"{row.name} seed {seed}",
            lambda: self.run_row(row, seed),
            self.result_path(row, seed).is_file,
            needs,
        )

    def seeds(self, row: Row) -> int:
        return row.seeds or self.recipe.seeds

    def jobs_done(self) -> int:
        """How many of the table's jobs have their results (whichever run made them)."""
        return sum(job.done() for job in self.jobs())

    def run(
        self, lanes: int = 1, threads: int = 1, published: dict[str, float] | None = None
    ) -> None:
        """Every job not yet done, each with `threads` torch threads: in this process, in order,
        with one lane; else on `lanes` worker processes, each job once those it needs are done
        (`lightning_modules.reproduce.scheduler`; `published`: job times of a published run of
        the table, for the order and the ETA). Results do not depend on the lanes."""
        import torch

        from lightning_modules.reproduce.scheduler import JobFailed, run_in_lanes

        quiet_lightning()
        if not self.synthetic:
            self.preflight()
        jobs = self.jobs()
        if lanes > 1:
            try:
                run_in_lanes(self, jobs, lanes, threads, published=published)
            except JobFailed as error:
                raise ReproduceError(str(error)) from None
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for number, job in enumerate(jobs, 1):
                label = f"[{self.recipe.table} {number}/{len(jobs)}] {job.name}"
                if job.done():
                    print(f"{label}: done earlier", flush=True)
                    continue
                print(f"{label} ...", flush=True)
                started = time.perf_counter()
                job.run()
                print(f"{label}: {time.perf_counter() - started:.0f} s", flush=True)
        finally:
            torch.set_num_threads(previous)

    # ------------------------------------------------------------ benchmark
    def data_flags(self, root: Path | None = None) -> list[str]:
        """The synthetic benchmark's root (or `root`, the pretraining pool's) for a command."""
        return [f"--data.init_args.root={root or self.benchmark}"] if self.synthetic else []

    # ---------------------------------------------------------- preparation
    def _prepare_job(self, step: PrepareStep, needs: tuple[str, ...]) -> Job:
        if step.extract is not None:
            out = self.benchmark / str(step.out)
            return Job(
                step.name, lambda: self.extract(step, out), (out / "meta.json").is_file, needs
            )
        done = self.runs / step.name / DONE
        return Job(step.name, lambda: self.fit_step(step), done.is_file, needs)

    def fit_step(self, step: PrepareStep) -> None:
        configs = [self.recipe.trainer, *step.fit]
        run_dir = self.runs / step.name
        pool = self.pool if self.recipe.pretraining else None
        flags = [*self.data_flags(pool), "--seed_everything=0", *step.args, *self.recipe.final_args]
        self.fit(configs, flags, run_dir)
        (run_dir / DONE).write_text("")

    def extract(self, step: PrepareStep, out: Path) -> None:
        source = str(step.extract)
        rows = {row.name: row for row in self.recipe.rows}
        run_dir = self.run_dir(rows[source], 0) if source in rows else self.runs / source
        checkpoint = run_dir / "checkpoints" / "best.ckpt"
        _extract([
            *_config_flags(step.data), *self.data_flags(),
            f"--data.init_args.load=[{step.modality}]", "--data.init_args.num_workers=0",
            f"--checkpoint={checkpoint}", f"--out={out}", *step.args,
        ])  # fmt: skip

    # ----------------------------------------------------------------- rows
    def run_dir(self, row: Row, seed: int) -> Path:
        return self.runs / f"{row.name}-seed{seed}"

    def result_path(self, row: Row, seed: int) -> Path:
        return self.results / row.name / f"seed{seed}.json"

    def teacher_flags(self, row: Row) -> list[str]:
        flags = []
        for name, teacher_row in row.teachers.items():
            checkpoint = self.run_dir(self.recipe.row(teacher_row), 0) / "checkpoints" / "best.ckpt"
            flags.append(f"--model.init_args.teachers.{name}={checkpoint}")
        return flags

    def row_command(self, row: Row, seed: int) -> tuple[list[Path], list[str]]:
        """The config files and flags of a row's `fit`."""
        data = row.data if self.synthetic and row.data else self.data_configs
        configs = [self.recipe.trainer, *data, *row.fit]
        flags = [
            *self.data_flags(), f"--seed_everything={seed}", *self.recipe.args, *row.args,
            *self.teacher_flags(row), *self.recipe.final_args,
        ]  # fmt: skip
        return configs, flags

    def preflight(self) -> None:
        """On `--data`, every row's model against the data (modalities, widths, classes)
        before the first row trains: one error naming each row that does not fit."""
        from lightning_modules.commands.data_check import data_config_parser
        from lightning_modules.model_data_check import model_config_problems

        parser = data_config_parser("crossdistill reproduce", "", with_model=True)
        found = []
        datamodules: dict[str, Any] = {}  # rows on the same data share one (annotations read once)
        for row in self.recipe.rows:
            configs, flags = self.row_command(row, 0)
            ours = [f for f in flags if f.startswith(("--data.", "--model."))]
            config = parser.parse_args([*_config_flags(configs), *ours])
            key = repr(config.data)
            if key not in datamodules:
                datamodules[key] = parser.instantiate(config.clone().update(None, "model")).data
            problems = model_config_problems(config.model, datamodules[key])
            found += [f"  row {row.name} ({_shown(row.fit[-1])}): {p}" for p in problems]
        if found:
            raise ReproduceError(
                f"--data {' '.join(map(str, self.data_configs))}: {len(found)} problem(s) before "
                "any training, "
                "each with its fix (edit the row's model config, or pass --rows to run the rows "
                "that fit):\n" + "\n".join(found)
            )

    def run_row(self, row: Row, seed: int) -> None:
        configs, flags = self.row_command(row, seed)
        run_dir = self.run_dir(row, seed)
        self.fit(configs, flags, run_dir)
        metrics = self.test(run_dir)
        path = self.result_path(row, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"row": row.name, "seed": seed, "run_dir": str(run_dir), "metrics": metrics}
        write_json_atomic(path, record)

    def fit(self, configs: list[Path], flags: list[str], run_dir: Path) -> None:
        """Train into `run_dir`, resuming from its last checkpoint if a fit was interrupted."""
        if (run_dir / "config.yaml").is_file() and (
            run_dir / "checkpoints" / "last.ckpt"
        ).is_file():
            _lightning(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last"])
            return
        if run_dir.exists():  # died before its first checkpoint: start it again
            shutil.rmtree(run_dir)
        argv = ["fit", *_config_flags(configs)]
        argv += [*flags, f"--trainer.default_root_dir={self.runs}", f"--run_name={run_dir.name}"]
        _lightning(argv)

    def test(self, run_dir: Path) -> dict[str, float]:
        """Test the run's best checkpoint; its `test/*` metrics, named as by `evaluate`."""
        _lightning(["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "best"])
        return read_test_metrics(run_dir / "test" / "metrics.csv")


def _benchmark_job(name: str, root: Path, options: dict) -> Job:
    """Generate a synthetic benchmark under `root`; done when it is complete with `options`."""
    config = SyntheticConfig(**options)
    return Job(name, lambda: generate_benchmark(root, config), lambda: is_complete(root, config))


def _shown(config: Path) -> str:
    """A shipped config by its name under configs/, another by its path."""
    shipped = config.is_relative_to(CONFIGS_ROOT)
    return str(config.relative_to(CONFIGS_ROOT)) if shipped else str(config)


def _config_flags(configs: Iterable[Path]) -> list[str]:
    return [flag for config in configs for flag in ("--config", str(config))]


def read_test_metrics(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise ReproduceError(f"{path} missing: the test run logged no metrics")
    values: dict[str, float] = {}
    with open(path, newline="") as handle:
        for record in csv.DictReader(handle):
            for key, value in record.items():
                if key.startswith("test/") and key != "test/loss" and value not in ("", None):
                    values[key.removeprefix("test/")] = float(value)
    if not values:
        raise ReproduceError(f"{path} holds no test metrics")
    return values
