"""Table recipes (`configs/experiments/*.yaml`): a paper table as rows composed of our configs.

A recipe names the data config its rows train on (replaced by `--data DATA.yaml` for a real
dataset), the preparation that only the synthetic benchmark needs (backbones trained on clips
and the snippet features extracted from them, which real benchmarks ship as I3D features), and
the rows: each a list of `configs/` files plus flags, trained once per seed, tested on the test
subset. A row may use other rows as teachers (their first seed's best checkpoint); the runner
orders rows so teachers come first. Paths are relative to `configs/`.

`pretraining` makes a second benchmark the same way with another seed (its keys override
`synthetic`'s): the `fit` steps of `prepare` train on its videos, so the features of the
benchmark come from backbones that never saw its videos, as I3D features come from Kinetics.

    table: dai21_dense
    title: ...
    seeds: 3
    data: data/synthetic_features.yaml
    trainer: trainer/cpu.yaml
    args: [--trainer.max_epochs=15]       # every row
    synthetic: {videos: 160}              # the benchmark made for --data synthetic
    pretraining: {seed: 1}                # the pool the backbones of `prepare` train on
    prepare:                              # synthetic only, in order
      - {name: backbone_rgb, fit: [data/synthetic_clips.yaml, teacher/clips_rgb.yaml]}
      - {name: features_rgb, extract: backbone_rgb, data: data/synthetic.yaml,
         modality: rgb, out: features/rgb}
    rows:
      - {name: rgb, label: RGB baseline, method: PDAN, inference: [rgb],
         fit: [teacher/dense_features_rgb.yaml], paper: {charades: {frame_mAP: 23.8}}}
      - {name: student, ..., fit: [distill/dense_features_dai21.yaml],
         teachers: {flow: flow, pose: pose}}
    smoke: {synthetic: {videos: 12}, args: [--trainer.max_epochs=1]}   # for --smoke
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

CONFIGS_ROOT = Path(__file__).resolve().parents[2] / "configs"
RECIPES = CONFIGS_ROOT / "experiments"


class RecipeError(ValueError):
    """A recipe that cannot run as written; the message names the recipe and the key."""


@dataclass(frozen=True)
class PrepareStep:
    """Synthetic-only preparation: a backbone `fit`, or an `extract` of features from a fit
    step or from a row (its first seed's best checkpoint: e.g. the clip models of the
    recognition table serve as the detection tables' feature extractors)."""

    name: str
    fit: tuple[Path, ...] = ()
    extract: str | None = None
    data: tuple[Path, ...] = ()
    modality: str | None = None
    out: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """One line of the table: a model trained from configs, with its seeds."""

    name: str
    label: str
    method: str
    inference: tuple[str, ...]
    fit: tuple[Path, ...]
    data: tuple[Path, ...] = ()
    teachers: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    paper: dict[str, dict[str, float]] = field(default_factory=dict)
    seeds: int | None = None
    """Seeds of this row when not the table's (teachers trained once, reused across seeds)."""


@dataclass(frozen=True)
class Recipe:
    table: str
    title: str
    path: Path
    seeds: int
    data: tuple[Path, ...]
    trainer: Path
    args: tuple[str, ...]
    final_args: tuple[str, ...]
    """Flags after every row's own (the smoke mode's), so they win."""
    synthetic: dict[str, Any]
    pretraining: dict[str, Any]
    """The pool's benchmark options (`synthetic`'s with the recipe's `pretraining` over them);
    empty: the backbones train on the benchmark itself."""
    prepare: tuple[PrepareStep, ...]
    rows: tuple[Row, ...]
    columns: tuple[str, ...]
    smoke: dict[str, Any]

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def on_table_data(self) -> Recipe:
        """The rows that train on the table's data config, which `--data` replaces; rows with a
        data config of their own (the synthetic frames, another task) are left out."""
        kept = tuple(row for row in self.rows if not row.data)
        if not kept:
            raise RecipeError(
                f"table {self.table}: every row names its own data config (it mixes tasks or "
                "trains on the synthetic frames), so --data has no row to replace the data of"
            )
        names = {row.name for row in kept}
        for row in kept:
            missing = sorted(set(row.teachers.values()) - names)
            if missing:
                raise RecipeError(
                    f"table {self.table}: row {row.name} distills from {missing}, which train on "
                    "their own data config and are left out with --data"
                )
        return replace(self, rows=kept)

    def reads_prepared(self, row: Row) -> bool:
        """Whether a row trains on the table's data config, which the preparation makes (the
        features); a row on a data config of its own (the frames) does not."""
        return set(self.data) <= set(row.data or self.data)

    def only(self, names: list[str]) -> Recipe:
        """The rows named (in the table's order) and those they need: their teachers, and, when
        one of them reads the prepared features, the rows the preparation extracts from."""
        known = [row.name for row in self.rows]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise RecipeError(f"table {self.table} has no rows {unknown}; its rows: {known}")
        needed = self._with_teachers(set(names))
        if any(self.reads_prepared(self.row(name)) for name in needed):
            needed = self._with_teachers(
                needed | {s.extract for s in self.prepare if s.extract in known}
            )
        return replace(self, rows=tuple(row for row in self.rows if row.name in needed))

    def _with_teachers(self, names: set[str]) -> set[str]:
        needed, pending = set(names), list(names)
        while pending:
            for teacher in self.row(pending.pop()).teachers.values():
                if teacher not in needed:
                    needed.add(teacher)
                    pending.append(teacher)
        return needed

    def ordered_rows(self) -> list[Row]:
        """Rows with every teacher before the rows that distill from it."""
        done: list[Row] = []
        pending = list(self.rows)
        while pending:
            ready = [
                r for r in pending if all(t in {d.name for d in done} for t in r.teachers.values())
            ]
            if not ready:
                names = [r.name for r in pending]
                raise RecipeError(f"{self.path}: rows {names} use each other as teachers")
            done += ready
            pending = [r for r in pending if r not in ready]
        return done


def recipe_path(table: str) -> Path:
    """`TABLE` as a recipe file: a name in configs/experiments/ or a path."""
    path = Path(table)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    if not RECIPES.is_dir():
        raise RecipeError(
            f"no table recipe {table!r}: the recipes and configs ship in the source checkout "
            f"(configs/experiments/), not in this installation ({CONFIGS_ROOT} is missing). "
            "Fix: run from a clone of the repository installed with `make install` (editable), "
            "or pass the path of a recipe YAML file"
        )
    named = RECIPES / f"{table}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    raise RecipeError(f"no table recipe {table!r}: choose one of {known} or pass a YAML file")


def load_recipe(table: str, smoke: bool = False) -> Recipe:
    """Read and check a recipe; `smoke` applies its `smoke:` section (a tiny, fast version)."""
    path = recipe_path(table)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping with table, rows, ...")
    smoke_section = raw.get("smoke") or {}
    synthetic = dict(raw.get("synthetic") or {})
    pretraining = {**synthetic, **raw["pretraining"]} if raw.get("pretraining") else {}
    final_args: tuple[str, ...] = ()
    if smoke:
        synthetic.update(smoke_section.get("synthetic") or {})
        if pretraining:
            pretraining.update(smoke_section.get("synthetic") or {})
        final_args = tuple(smoke_section.get("args") or ())
    try:
        recipe = Recipe(
            table=raw["table"],
            title=raw.get("title", raw["table"]),
            path=path,
            seeds=int(raw.get("seeds", 1) if not smoke else smoke_section.get("seeds", 1)),
            data=_configs(path, raw["data"]),
            trainer=_config(path, raw.get("trainer", "trainer/cpu.yaml")),
            args=tuple(raw.get("args") or ()),
            final_args=final_args,
            synthetic=synthetic,
            pretraining=pretraining,
            prepare=tuple(
                _prepare(path, step, smoke_section, smoke) for step in raw.get("prepare") or ()
            ),
            rows=tuple(_row(path, row) for row in raw["rows"]),
            columns=tuple(raw.get("columns") or ()),
            smoke=smoke_section,
        )
    except KeyError as error:
        raise RecipeError(f"{path}: missing key {error}") from error
    _check_references(recipe)
    return recipe


def _config(recipe: Path, name: str) -> Path:
    path = CONFIGS_ROOT / name
    if not path.is_file():
        raise RecipeError(f"{recipe}: config {name} not found under {CONFIGS_ROOT}")
    return path


def _configs(recipe: Path, names: str | list[str]) -> tuple[Path, ...]:
    """One config or a list of them, composed in order (a base data config, then overlays)."""
    return tuple(_config(recipe, n) for n in ([names] if isinstance(names, str) else names))


def _prepare(recipe: Path, raw: dict, smoke_section: dict, smoke: bool) -> PrepareStep:
    args = tuple(raw.get("args") or ())
    if smoke:
        args += tuple(smoke_section.get("prepare_args") or ())
    return PrepareStep(
        name=raw["name"],
        fit=tuple(_config(recipe, c) for c in raw.get("fit") or ()),
        extract=raw.get("extract"),
        data=_configs(recipe, raw["data"]) if raw.get("data") else (),
        modality=raw.get("modality"),
        out=raw.get("out"),
        args=args,
    )


def _row(recipe: Path, raw: dict) -> Row:
    return Row(
        name=raw["name"],
        label=raw.get("label", raw["name"]),
        method=raw.get("method", ""),
        inference=tuple(raw.get("inference") or ("rgb",)),
        fit=tuple(_config(recipe, c) for c in raw["fit"]),
        data=_configs(recipe, raw["data"]) if raw.get("data") else (),
        teachers=dict(raw.get("teachers") or {}),
        args=tuple(raw.get("args") or ()),
        paper=dict(raw.get("paper") or {}),
        seeds=raw.get("seeds"),
    )


def _check_references(recipe: Recipe) -> None:
    if recipe.pretraining and recipe.pretraining.get("seed", 0) == recipe.synthetic.get("seed", 0):
        raise RecipeError(
            f"{recipe.path}: pretraining needs a seed other than the benchmark's "
            f"({recipe.synthetic.get('seed', 0)}), or its videos are the benchmark's own"
        )
    names = [row.name for row in recipe.rows] + [step.name for step in recipe.prepare]
    if len(set(names)) != len(names):
        raise RecipeError(f"{recipe.path}: row and step names must be unique: {names}")
    rows = {row.name for row in recipe.rows}
    for row in recipe.rows:
        unknown = set(row.teachers.values()) - rows
        if unknown:
            raise RecipeError(f"{recipe.path}: row {row.name} names unknown teachers {unknown}")
    built: set[str] = set()
    for step in recipe.prepare:
        if step.extract is not None:
            if step.extract not in built | rows:
                raise RecipeError(
                    f"{recipe.path}: step {step.name} extracts from {step.extract!r}, which is "
                    "neither a row nor an earlier fit step"
                )
            if not step.data or step.modality is None or step.out is None:
                raise RecipeError(
                    f"{recipe.path}: extract step {step.name} needs data, modality, out"
                )
        elif not step.fit:
            raise RecipeError(f"{recipe.path}: step {step.name} needs fit or extract")
        built.add(step.name)
    recipe.ordered_rows()
