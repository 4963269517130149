"""`crossdistill evaluate`: score prediction files, from this or any other tool, against ground
truth. Prints one JSON object to stdout; every score is a fraction in [0, 1].

    crossdistill evaluate segments --ground-truth GT.json --predictions PRED.json
                                   [--subset NAME] [--tiou T ...] [--top-k K ...] [--official]
    crossdistill evaluate proposals --ground-truth GT.json --predictions PROPOSALS.json
                                    [--subset NAME] [--tiou T ...] [--max-proposals AN] [--official]
    crossdistill evaluate frames --ground-truth GT.json --predictions SCORES.npz [--subset NAME]
                                 [--protocol pdan|charades] [--format tsu]
    crossdistill evaluate clips --predictions CLIPS.json

Unknown videos, labels and classes, malformed segments (end before start, negative times) and
NaN scores are errors that name the entry (the exit status is then 1); `segments --official`
scores unknown videos and malformed segments as the official evaluator does instead.

ground truth (segments, frames): by default the ActivityNet layout, times in seconds,
  {"database": {VIDEO: {"subset", "duration", "annotations": [{"segment": [s, e], "label"}]}}}
  with the classes from "taxonomy" (or the labels used; see datamodules read_activitynet).
  --subset names the evaluated subset (any case); a file with several subsets needs it (the
  official ActivityNet evaluator scores "validation"). --format reads another layout with the
  data layer's reader of that name: tsu (frames at 20 fps, classes 0-50 named by Action_list
  beside it), multithumos, thumos14_txt (the original per-class files), charades, ...

segments: predictions in the ActivityNet results layout,
  {"results": {VIDEO: [{"label", "score", "segment": [s, e]}]}}
  or in ActionFormer's, {"database": {VIDEO: [{"segment": [s, e], "label_id", "scores"}]}},
  its label_id named by the ground truth's (ActionFormer's annotation files carry them).
  Detection mAP at each tIoU threshold (default ActivityNet's 0.5:0.05:0.95; THUMOS14 uses
  0.3 0.4 0.5 0.6 0.7); see lightning_modules/metrics/segment_map.py. Evaluated videos without
  predictions count as missed. Predictions of videos outside the evaluated ground truth and
  segments that end before they start or start before 0 are errors; two zero-length segments
  match only where they coincide (tIoU 1). --official scores as the official evaluators do
  instead: those predictions are false positives at their rank, negative starts are kept, and a
  zero-length prediction matches a zero-length ground-truth segment of its class anywhere in the
  video (their 0/0 = NaN). Also the top-kx recall (OpenTAD's recall@tIoU@k for --top-k, default
  1 5): per video and class, the k * n best predictions of the class (n: its ground-truth segments
  there) recall each segment one of them reaches; mean over classes (under --official zero-length
  pairs reach nothing, as there). Prints {"mAP": {"0.5": ..., ...}, "average_mAP": ...,
  "recall": {"1x": {"0.5": ..., ..., "average"}, "5x": ...}, "conventions": "strict" | "official",
  "per_class": {CLASS: {"0.5": AP, ..., "average"}}} (classes with ground truth; --per-class
  also prints them as a table on stderr). Tied scores rank by video, start, end.

proposals: class-agnostic proposals in the ActivityNet results layout (labels are not read),
  {"results": {VIDEO: [{"score", "segment": [s, e]}]}}, against the segments of the ground truth
  whatever their class: the average recall (AR) over the tIoU thresholds against the average
  number of proposals per video (AN), as the ActivityNet proposal evaluator samples it: each
  video keeps its int(n * ratio) best proposals, ratio = AN_max * videos / proposals in the file
  (--max-proposals AN_max, default 100), and point j = 1..100 takes the first
  int(kept * j / 100 * AN_max * videos / all kept) of them. Videos are those with ground-truth
  segments. Prints {"AR@AN": {"1": ..., "5", "10", "50", "100"} (the curve at j = AN / AN_max *
  100: exactly AN proposals a video when every video has AN_max), "AUC": area under the curve
  over its last AN (a fraction; the official print is 100 times it), "recall_at_max": {tIoU:
  recall}, "curve": {"average_proposals": [...], "average_recall": [...]}, "conventions"}.
  Tied scores rank by start, then end. --official counts proposals of videos outside the
  evaluated ground truth in the ratio, keeps inverted segments (they recall nothing) and negative
  starts, and never recalls a zero-length segment (their 0/0 = NaN); by default those proposals
  are errors and a zero-length segment is recalled by the same zero-length proposal.

frames: ground truth as above, or a Charades CSV (Charades_v1_test.csv, with
  Charades_v1_classes.txt beside it; its subset is the file's, e.g. `test`). Predictions: an npz
  holding a (T, K) score array per video id and a `classes` array naming the K
  columns (labels of the ground truth), and optionally `stride`, the seconds per row (what
  crossdistill writes); or PDAN's pickle, {VIDEO: (K, T) probabilities} with the columns in
  the ground truth's class order (only arrays are unpickled). Row i stands for time
  (i + 0.5) * stride, and T must then be the video's number of steps (+-1): padded or cut arrays
  are refused; without `stride`, row i stands for (i + 0.5) * duration / T. A row is positive
  for a class when that time lies in [start, end] of one of its segments. Scores must be
  finite. Every evaluated video needs scores, and every class with ground truth a column.
  Every row of every video is scored (pooled); --protocol pdan labels row i at i * duration / T
  with strict bounds, as the TSU/MultiTHUMOS/Charades loaders of Dai et al.'s PDAN code;
  --protocol charades scores 25 instants a video instead, t = j / 25 * duration for
  j = 0..24, each by the row whose step holds t (the Charades localisation evaluator's
  protocol, Charades_v1_localize.m). Under both official protocols tied scores rank one by one
  in ground-truth order, as their sorts do.
  Prints {"frame_mAP": ..., "frame_mAP_all": ..., "frame_wAP": ..., "protocol": ...,
  "per_class": {CLASS: {"AP": ...}}} (classes with a positive / all columns / weighted by each
  class's positives, Charades' WAP; per_class for the classes with a positive).

clips: one JSON file with the predictions and labels of trimmed clips,
  {"scores": "logits" | "probabilities",
   "heads": {HEAD: [class names, in score order], ...},
   "clips": {CLIP: {HEAD: {"label": name, "scores": [K numbers]}, ...}, ...}}
  One head (e.g. "action" with Something-Something's 174 templates) or several
  (EPIC-KITCHENS: "verb" and "noun"). Logits go through a softmax for the calibration error;
  probabilities must sum to 1. Prints {HEAD: {"top1", "top5", "ece"}, ...}, and with heads
  "verb" and "noun" also {"action": {"top1"}} (verb and noun both right). Ties count as wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "score prediction files against ground truth"


def _parser() -> argparse.ArgumentParser:
    from lightning_modules.metrics.segment_map import ACTIVITYNET_TIOUS

    parser = argparse.ArgumentParser(
        prog="crossdistill evaluate",
        description="Score prediction files against ground truth; prints one JSON object.",
        epilog=_section("ground truth"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    subcommands = {
        "segments": "detection mAP and top-kx recall at tIoU thresholds",
        "proposals": "average recall of proposals against their number per video (AR@AN)",
        "frames": "per-frame mAP of dense scores",
        "clips": "top-1/top-5 accuracy and calibration error of clip recognition",
    }
    sub = {
        name: commands.add_parser(
            name,
            help=text,
            description=_section(name),
            epilog=_section("ground truth") if name != "clips" else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for name, text in subcommands.items()
    }
    for name in ("segments", "frames"):
        sub[name].add_argument(
            "--per-class",
            action="store_true",
            help="also print the per-class APs (always in the JSON's per_class) as a table on "
            "stderr, worst class first",
        )
    for name, metavar in (
        ("segments", "PRED.json"),
        ("proposals", "PROPOSALS.json"),
        ("frames", "SCORES.npz"),
    ):
        sub[name].add_argument("--ground-truth", type=Path, required=True, metavar="GT.json")
        sub[name].add_argument("--predictions", type=Path, required=True, metavar=metavar)
        sub[name].add_argument("--subset", help="evaluate this subset only (default: all)")
        sub[name].add_argument(
            "--format",
            default=None,
            metavar="NAME",
            help="the ground truth's layout, a data config's annotation_format (tsu, pku_mmd, "
            "multithumos, thumos14_txt, charades, activitynet, ...; default: charades for .csv, "
            "else activitynet)",
        )
    official_help = {
        "segments": "score as the official ActivityNet evaluator does: predictions of videos "
        "outside the evaluated ground truth and segments ending before they start are false "
        "positives (default: refused), and a zero-length prediction matches a zero-length "
        "ground-truth segment anywhere in the video (default: where they coincide)",
        "proposals": "score as the official ActivityNet proposal evaluator does: proposals of "
        "videos outside the evaluated ground truth count in the sampling ratio and segments "
        "ending before they start recall nothing (default: refused); zero-length segments are "
        "never recalled (default: by the same zero-length proposal)",
    }
    for name, help_text in official_help.items():
        sub[name].add_argument(
            "--tiou",
            type=float,
            nargs="+",
            default=list(ACTIVITYNET_TIOUS),
            metavar="T",
            help="tIoU thresholds (default: 0.5 0.55 ... 0.95)",
        )
        sub[name].add_argument(
            "--official",
            action="store_const",
            const="official",
            default="strict",
            dest="conventions",
            help=help_text,
        )
    sub["segments"].add_argument(
        "--top-k",
        type=int,
        nargs="+",
        default=[1, 5],
        metavar="K",
        help="top-kx recall: the k * n best predictions of a class in a video, n its "
        "ground-truth segments there (default: 1 5)",
    )
    sub["proposals"].add_argument(
        "--max-proposals",
        type=float,
        default=100.0,
        metavar="AN",
        help="the largest average number of proposals per video on the curve (default: 100)",
    )
    sub["frames"].add_argument(
        "--protocol",
        choices=("pooled", "pdan", "charades"),
        default="pooled",
        help="which instants are scored and how they are labelled: every row at (i + 0.5) * "
        "stride, bounds inclusive (pooled, default); every row at i * duration / T, bounds "
        "strict (pdan: the TSU/MultiTHUMOS/Charades loaders of Dai et al.'s code); 25 a video "
        "at j / 25 of its duration (charades: the Charades localisation evaluator's)",
    )
    sub["clips"].add_argument("--predictions", type=Path, required=True, metavar="CLIPS.json")
    return parser


def _section(name: str) -> str:
    """The paragraph of this module's docstring on `name`, for --help."""
    return next((p for p in (__doc__ or "").split("\n\n") if p.startswith(name)), "")


def main(argv: list[str]) -> int:
    from lightning_modules.evaluate import (
        evaluate_clips,
        evaluate_frames,
        evaluate_proposals,
        evaluate_segments,
    )

    args = _parser().parse_args(argv)
    try:
        if args.command == "segments":
            result = evaluate_segments(
                args.ground_truth,
                args.predictions,
                args.subset,
                args.tiou,
                args.conventions,
                args.format,
                args.top_k,
            )
        elif args.command == "proposals":
            result = evaluate_proposals(
                args.ground_truth,
                args.predictions,
                args.subset,
                args.tiou,
                args.max_proposals,
                args.conventions,
                args.format,
            )
        elif args.command == "frames":
            result = evaluate_frames(
                args.ground_truth, args.predictions, args.subset, args.protocol, args.format
            )
        else:
            result = evaluate_clips(args.predictions)
    except (ValueError, FileNotFoundError) as err:  # EvaluationError, AnnotationError, bad --subset
        print(f"crossdistill evaluate {args.command}: error: {err}", file=sys.stderr)
        return 1
    if getattr(args, "per_class", False):
        print(per_class_table(result["per_class"]), file=sys.stderr)
    print(json.dumps(result, allow_nan=False))
    return 0


def per_class_table(per_class: dict[str, dict[str, float]]) -> str:
    """The per-class APs in %, one line per class, lowest mean first (where to look)."""
    columns = list(next(iter(per_class.values()), {}))
    width = max([len("class"), *map(len, per_class)])
    lines = ["  ".join(["class".ljust(width), *(f"{c:>7}" for c in columns)])]
    for name, row in sorted(per_class.items(), key=lambda item: item[1][columns[-1]]):
        lines.append("  ".join([name.ljust(width), *(f"{100 * row[c]:7.2f}" for c in columns)]))
    return "\n".join(lines)
