"""The papers' qualitative claims, checked on a table's `results.json` with the seed spread.

Each claim compares two rows of one table on one metric (the row's main metric unless named):

- `above`: the first row's mean beats the second's by more than the second's seed spread
  (its sample std over seeds): the gain is larger than the noise of what it is compared with.
- `at_least`: the first row's mean is not below the second's by more than the larger of the
  two spreads: "at least as good", within the noise.

For metrics where lower is better (ECE), "beats" means lower. A claim whose rows a table did
not run is reported as not checked, never as holding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lightning_modules.reproduce.results import main_metric


@dataclass(frozen=True)
class Claim:
    text: str
    first: str
    second: str
    relation: Literal["above", "at_least"] = "above"
    metric: str | None = None  # None: the first row's main metric
    lower_is_better: bool = False


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    holds: bool | None  # None: a row is missing from the table
    detail: str


def _teachers_above(baseline: str, teachers: dict[str, str]) -> list[Claim]:
    return [
        Claim(f"the {name} beats the RGB baseline", row, baseline) for row, name in teachers.items()
    ]


def _students_above(pairs: dict[str, str]) -> list[Claim]:
    return [
        Claim(
            f"the distilled student '{student}' beats its RGB baseline '{baseline}'",
            student,
            baseline,
        )
        for student, baseline in pairs.items()
    ]


RADEVSKI_STUDENTS = (
    "student_uniform_kd_only",  # the authors' default: the KD loss alone
    "student_uniform",
    "student_per_sample",
    "student_held_out",
)

CLAIMS: dict[str, list[Claim]] = {
    "radevski_clips": [
        *_teachers_above(
            "rgb",
            {"flow": "flow teacher", "boxes": "object-box teacher", "pose": "pose teacher"},
        ),
        *_students_above({student: "rgb" for student in RADEVSKI_STUDENTS}),
        *(
            Claim(
                f"the distilled student '{s}' is better calibrated (lower ECE) than the RGB "
                "baseline",
                s,
                "rgb",
                metric="ece",
                lower_is_better=True,
            )
            for s in RADEVSKI_STUDENTS
        ),
    ],
    "dai21_dense": [
        *_teachers_above("rgb", {"flow": "flow teacher", "pose": "pose teacher"}),
        *_teachers_above(
            "rgb_frames",
            {"flow_frames": "flow teacher (frames)", "pose_frames": "pose teacher (frames)"},
        ),
        *_students_above(
            {
                "dai_flow_pose": "rgb",
                "dai_flow": "rgb",
                "dai_pose": "rgb",
                "dai_frames": "rgb_frames",
            }
        ),
        *(
            Claim(
                f"Dai's three losses together are at least as good as {alone}",
                "dai_flow_pose",
                alone,
                "at_least",
            )
            for alone in ("atomic_only", "global_only", "boundary_only")
        ),
        *(
            Claim(
                f"both teachers together are at least as good as one ({one})",
                "dai_flow_pose",
                one,
                "at_least",
            )
            for one in ("dai_flow", "dai_pose")
        ),
    ],
    "lee23_segments": [
        *_teachers_above("rgb", {"flow": "flow teacher"}),
        *_teachers_above("rgb_frames", {"flow_frames": "flow teacher (frames)"}),
        *_students_above({"decomposed": "rgb", "decomposed_frames": "rgb_frames"}),
        Claim(
            "decomposed distillation beats conventional single-branch distillation",
            "decomposed",
            "conventional",
        ),
        *(
            Claim(
                f"the full decomposed method beats its ablation '{ablation}'",
                "decomposed",
                ablation,
            )
            for ablation in (
                "no_sharing",
                "no_feat",
                "no_pred",
                "fusion_concat",
                "fusion_sum",
                "fusion_cross_attention",
            )
        ),
    ],
}


def check(results: dict[str, Any], claims: list[Claim] | None = None) -> list[Verdict]:
    """The verdict on each of `claims`, by default those of the table `results["table"]`
    (none for a table without claims)."""
    rows = {row["row"]: row for row in results["rows"]}
    chosen = CLAIMS.get(results["table"], []) if claims is None else claims
    return [_verdict(claim, rows) for claim in chosen]


def _verdict(claim: Claim, rows: dict[str, dict[str, Any]]) -> Verdict:
    missing = [name for name in (claim.first, claim.second) if name not in rows]
    if missing:
        return Verdict(claim, None, f"not checked: the table has no row {missing}")
    metric = claim.metric or main_metric(rows[claim.first])
    if unscored := [
        name for name in (claim.first, claim.second) if metric not in rows[name]["metrics"]
    ]:
        return Verdict(claim, None, f"not checked: {unscored} have no {metric}")
    first, second = (rows[name]["metrics"][metric] for name in (claim.first, claim.second))
    sign = -1.0 if claim.lower_is_better else 1.0
    gain = sign * (first["mean"] - second["mean"])
    if claim.relation == "above":
        margin = second["std"]
        holds = gain > margin
        rule = f"gain {100 * gain:+.1f} > spread of {claim.second} {100 * margin:.1f}"
    else:
        margin = max(first["std"], second["std"])
        holds = gain >= -margin
        rule = f"gain {100 * gain:+.1f} >= -{100 * margin:.1f} (the larger spread)"
    values = f"{claim.first} {_shown(first)} vs {claim.second} {_shown(second)} ({metric}, %)"
    return Verdict(claim, holds, f"{values}: {rule}")


def _shown(summary: dict[str, Any]) -> str:
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"
