"""The pre-flight checks of a dataset config, before any training (`crossdistill data-check`).

`run_checks` checks every video of a `MultimodalDataModule`'s train, val and test subsets with
every modality: missing and undecodable files, lengths that disagree with the annotated
durations, wrong shapes, NaN; unknown labels and empty subsets from the annotations; and how
many videos each modality covers. Each problem comes with its fix. It prints the report (through
`say`) and returns the problems that would stop training (with `missing: skip`, broken videos
are only left out, so they stop it only when a subset is left empty).

When the annotations cannot be read at all (an unknown label, a malformed line), the files are
still checked: the videos are then found by listing the first modality's files. The checks never
write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from datamodules.annotations import AnnotationError, VideoRecord
from datamodules.datamodule import MultimodalDataModule, SubsetReport
from datamodules.sources.base import DataError, Problem


def run_checks(dm: MultimodalDataModule, say: Any = print) -> list[Problem]:
    """Check everything, print the report through `say`; returns the blocking problems."""
    say(f"data-check: {type(dm).__name__}, root {dm.root.resolve()}, task {dm.task}")
    for name, source in dm.modalities.items():
        say(f"  modality {name}: {type(source).__name__}, files {source.path}")
    blocking: list[Problem] = []
    reports: list[tuple[str, SubsetReport]] = []
    try:
        annotations = dm.annotation_set
    except (AnnotationError, DataError, OSError) as err:
        blocking.append(_error_problem(dm, err))
        say(f"annotations: UNREADABLE ({', '.join(map(str, dm.annotation_files))})")
        say("  checking the files found on disk instead, against the length of the first")
        say("  readable modality file of each video")
        reports.append(("-", dm.check_records("files on disk", _records_on_disk(dm))))
    else:
        say(
            f"annotations: {', '.join(map(str, dm.annotation_files))} ({dm.annotation_format}): "
            f"{len(annotations.records)} videos, {len(annotations.classes)} classes, "
            f"subsets {list(annotations.subset_names)}"
        )
        blocking += _segments_after_end(dm, annotations.records.values(), say)
        for role, subset in dm.subsets.items():
            if subset is None:
                continue
            try:
                report = dm.inspect(role)
            except DataError as err:  # the subset is not in the annotations
                blocking.append(_error_problem(dm, err))
                continue
            reports.append((role, report))
            blocking += _subset_problems(dm, role, report)
    _print_table(dm, reports, say)
    found = [p for _, report in reports for p in report.all_problems]
    if dm.missing == "error":
        blocking += found
    listed = blocking if dm.missing == "error" else [*blocking, *found]
    if listed:
        say(f"\nproblems ({len(listed)}), each with its fix:")
        for problem in listed:
            say(f"  {problem}")
    if blocking:
        say(f"\nFAIL: {len(blocking)} problem(s) would break training.")
    elif found:
        say(f"\nOK with `missing: skip`: {len(found)} problem(s); those videos will be left out.")
    else:
        say("\nOK: every file of every subset is ready.")
    return blocking


def _error_problem(dm: MultimodalDataModule, err: Exception) -> Problem:
    """An annotation error as a problem: its file, what is wrong, and its fix."""
    message = str(err)
    path = str(dm.annotation_files[0])
    # annotation errors start with the file (and line) they concern: keep both
    for candidate in map(str, dm.annotation_files):
        if message.startswith(candidate):
            rest = message[len(candidate) :]
            line = re.match(r":(\d+)", rest)
            path = f"{candidate}:{line.group(1)}" if line else candidate
            message = rest.lstrip(":0123456789 ")
    what, _, fix = message.partition(" Fix: ")
    return Problem(path, what.rstrip(". "), fix or "correct the annotation file")


def _segments_after_end(
    dm: MultimodalDataModule, records: Iterable[VideoRecord], say: Any
) -> list[Problem]:
    """Segments that start at or after their video's end. A few are known annotation errors
    (THUMOS14's video_test_0000270): listed, not blocking. Most of them means the times are
    not seconds (frames, milliseconds): blocking."""
    records = list(records)
    total = sum(len(r.segments) for r in records)
    late = [
        (r.video_id, s) for r in records if r.duration for s in r.segments if s.start >= r.duration
    ]
    if not late:
        return []
    where = str(dm.annotation_files[0])
    if len(late) > total / 2:
        return [
            Problem(
                where,
                f"{len(late)} of {total} segments start after their video's end: the times are "
                "not in seconds (frames? milliseconds?)",
                "convert the annotation times to seconds",
            )
        ]
    say(f"warning: {len(late)} of {total} segments start after their video's end; they match no")
    say("  window, so they are no training target and count as missed in evaluation:")
    for video_id, segment in late[:10]:
        say(f"    {video_id}: {segment.label} [{segment.start:g}, {segment.end:g}] s")
    return []


def _subset_problems(dm: MultimodalDataModule, role: str, report: SubsetReport) -> list[Problem]:
    """Problems that stop training whatever `missing` says: an empty subset, unusable windows."""
    where = str(dm.annotation_files[0])
    if not report.records:
        return [Problem(where, f"subset {report.name!r} has no videos", "add videos or rename")]
    if dm.missing == "skip" and not report.usable:
        return [
            Problem(where, f"subset {report.name!r} has no usable videos", "fix the files below")
        ]
    if report.all_problems and dm.missing == "error":
        return []  # the file problems are listed on their own; a sample cannot be built yet
    try:
        dataset = dm.dataset(role, report.usable)
        dataset[0]
    except Exception as err:
        return [
            Problem(
                where,
                f"subset {report.name!r}: a sample cannot be built ({err})",
                "correct the annotations or the data config as the message says",
            )
        ]
    return []


def _records_on_disk(dm: MultimodalDataModule) -> list[VideoRecord]:
    """Videos found by listing the first modality's files (when annotations are unreadable)."""
    source = next(iter(dm.modalities.values()))
    template = str(source.path)
    pattern = re.compile(
        re.escape(str(dm.root / template)).replace(re.escape("{video_id}"), "(?P<id>.+)") + "$"
    )
    ids = []
    for path in sorted(dm.root.glob(template.format(video_id="*"))):
        match = pattern.match(str(path))
        if match:
            ids.append(match["id"])
    return [VideoRecord(video_id, "?", None) for video_id in ids]


def _print_table(
    dm: MultimodalDataModule, reports: list[tuple[str, SubsetReport]], say: Any
) -> None:
    names = list(dm.modalities)
    header = ["subset", "role", "videos", "usable", *names]
    rows = [
        [
            report.name,
            role,
            str(len(report.records)),
            str(len(report.usable)),
            *(f"{report.coverage[n]}/{len(report.records)}" for n in names),
        ]
        for role, report in reports
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    say("\ncoverage (videos whose file of each modality is ready):")
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        say(("  " + "  ".join(cells)).rstrip())
