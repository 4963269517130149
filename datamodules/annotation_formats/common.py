"""What every reader needs: errors that name the place and the fix, vocabularies, time checks."""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from datamodules.annotations import AnnotationError, Segment, VideoRecord


def annotation_error(
    path: Path, problem: str, fix: str, *, video: str | None = None, line: int | None = None
) -> AnnotationError:
    """An error that says where (file, line, video), what is wrong, and what to do about it."""
    place = f"{path}:{line}" if line is not None else str(path)
    subject = f" video {video!r}:" if video is not None else ""
    return AnnotationError(f"{place}:{subject} {problem}. Fix: {fix}")


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """`path` as a Path, or a FileNotFoundError that says which file is missing and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}. Fix: {fix}")
    return path


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys must be distinct: json.load would keep the last silently."""
    found = dict(pairs)
    if len(found) != len(pairs):  # rare: find the key (the fast path is one dict())
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


def load_json(path: Path, what: str, fix: str) -> Any:
    """Parse a JSON file (a UTF-8 byte-order mark allowed), reporting a missing or broken file
    by its name and line, and a key that appears twice in one object (a video listed twice).

    The cyclic garbage collector is paused while parsing: the parser only allocates, and the
    collector's passes over half a million new objects took 40 % of the time on an
    ActivityNet-size results file."""
    with require_file(path, what, fix).open(encoding="utf-8-sig") as f, _collector_paused():
        try:
            return json.load(f, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise annotation_error(
                path,
                f"not valid JSON ({err.msg})",
                "re-download or repair the file",
                line=err.lineno,
            ) from None
        except _DuplicateKey as err:
            raise annotation_error(
                path,
                f"the key {err.args[0]!r} appears twice in one object, so one of its entries "
                "would be dropped",
                "merge the two entries into one",
            ) from None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def csv_rows(path: Path, columns: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """`(line number, row)` of each row of a CSV whose header must have `columns`.

    A row with more or fewer fields than the header is an error: it is almost always an unquoted
    comma in a free-text field, which would shift every later column.
    """
    with path.open(encoding="utf-8-sig", newline="") as f:  # a byte-order mark is not a column
        rows = csv.DictReader(f)
        missing = [c for c in columns if c not in (rows.fieldnames or ())]
        if missing:
            raise annotation_error(
                path, f"no {missing} column(s) in the header", "use the file as released", line=1
            )
        for row in rows:
            if None in row or None in row.values():
                raise annotation_error(
                    path,
                    f"the row does not have the header's {len(rows.fieldnames or ())} fields",
                    "double-quote fields that contain commas",
                    line=rows.line_num,
                )
            yield rows.line_num, row


def number(
    value: object, path: Path, what: str, *, video: str | None, line: int | None = None
) -> float:
    """`value` as a finite float; anything else is a malformed annotation."""
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result):
        raise annotation_error(
            path, f"{what} is {value!r}, not a number", "correct the value", video=video, line=line
        )
    return result


def check_span(
    start: float, end: float, unit: str, path: Path, *, video: str, line: int | None = None
) -> None:
    """Reject a segment that ends before it starts or starts before the video. Zero-length
    segments are real (ActivityNet), and so are ends past the duration (288 in ActivityNet
    v1.3; clipped when read); segments that start after their video's end are reported by
    `crossdistill data-check` (`segments_after_end`)."""
    problem = None
    if end < start:
        problem = f"segment ends at {end:g} {unit}, before its start at {start:g} {unit}"
    elif start < 0:
        problem = f"segment starts at {start:g} {unit}, before the video starts"
    if problem is not None:
        raise annotation_error(
            path, problem, "correct or drop this segment", video=video, line=line
        )


def sorted_segments(segments: Iterable[Segment]) -> tuple[Segment, ...]:
    """One canonical order, so records read from different formats compare equal."""
    return tuple(sorted(segments, key=lambda s: (s.start, s.end, s.label)))


def subset_from_filename(path: Path) -> str:
    """The split word that ends a file name (`Charades_v1_train.csv` -> `train`)."""
    return re.split(r"[-_]", path.stem)[-1]


class Vocabulary:
    """A dataset's class names and where they came from, so an unknown label can say what to fix.

    `refs` maps how a file refers to a class, where it does not write names, to the class name:
    by number (MultiTHUMOS counts from 1, TSU from 0) or by key (Charades' `c092`).
    """

    def __init__(
        self, names: Iterable[str], source: str, refs: Mapping[int | str, str] | None = None
    ) -> None:
        self.names = tuple(names)
        self.source = source
        self.refs = dict(refs or {})
        self._known = frozenset(self.names)
        if len(self._known) != len(self.names):
            repeated = sorted({n for n in self.names if self.names.count(n) > 1})
            raise AnnotationError(
                f"{source} names these classes twice: {repeated}. Fix: keep one of each"
            )

    @classmethod
    def numbered(cls, names: Iterable[str], source: str, first: int) -> Vocabulary:
        """Classes the files refer to by number, counting from `first`."""
        names = tuple(names)
        return cls(names, source, {first + i: name for i, name in enumerate(names)})

    def check(self, label: str, path: Path, *, video: str, line: int | None = None) -> str:
        """`label` itself, or an error naming the file, the video and the label."""
        if label not in self._known:
            raise annotation_error(
                path,
                f"label {label!r} is not one of the {len(self.names)} classes of {self.source}",
                f"correct the label, or add it to {self.source}",
                video=video,
                line=line,
            )
        return label

    def name_of(self, ref: object, path: Path, *, video: str, line: int | None = None) -> str:
        """The name of the class a file refers to as `ref` (`3`, `"3"`, `"c092"`)."""
        key = as_int(ref)
        key = ref if key is None else key
        name = self.refs.get(key) if isinstance(key, int | str) else None
        if name is None:
            first, last = next(iter(self.refs), None), next(reversed(self.refs), None)
            raise annotation_error(
                path,
                f"class {ref!r} is not one of the {len(self.refs)} classes of {self.source} "
                f"({first} to {last})",
                "correct the class, or pass the class list the file was written with",
                video=video,
                line=line,
            )
        return name

    def check_records(self, path: Path, records: Iterable[VideoRecord]) -> None:
        """Check every segment label and clip label against the vocabulary."""
        for record in records:
            for segment in record.segments:
                self.check(segment.label, path, video=record.video_id)
            if record.clip_label is not None:
                self.check(record.clip_label, path, video=record.video_id)


def as_int(value: object) -> int | None:
    """`value` as an int when it is one (or its digits), else None; floats and bools are not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def class_list(path: Path, fix: str) -> list[tuple[int, str, str]]:
    """The `(line number, key, name)` of each `key name` line of a class list file."""
    entries = []
    with require_file(path, "class list", fix).open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split(maxsplit=1)
            if len(parts) == 1:
                raise annotation_error(
                    path,
                    f"expected `<key> <class name>`, found {line.strip()!r}",
                    fix,
                    line=line_no,
                )
            if parts:
                entries.append((line_no, parts[0], parts[1].strip()))
    return entries


def numbers_or_class_list(
    class_list: str | Path | None, base: int, count: int, source: str, fix: str
) -> Vocabulary:
    """The class list's names when one is given, else the class numbers `base..base+count-1`
    as names (for datasets whose label files carry only numbers)."""
    if class_list is None:
        return Vocabulary.numbered((str(n) for n in range(base, base + count)), source, base)
    return numbered_vocabulary(Path(class_list), base, fix)


def numbered_vocabulary(path: Path, base: int, fix: str) -> Vocabulary:
    """Read a class list of `number name` lines numbered consecutively from `base`.

    The numbers are checked rather than trusted, because an off-by-one list would silently shift
    every label by one class.
    """
    entries = class_list(path, fix)
    for position, (line_no, key, _) in enumerate(entries):
        if as_int(key) != base + position:
            raise annotation_error(
                path,
                f"class number {key!r} where {base + position} was expected",
                f"number the classes consecutively from {base}, one `number name` per line",
                line=line_no,
            )
    return Vocabulary.numbered((name for _, _, name in entries), path.name, base)
