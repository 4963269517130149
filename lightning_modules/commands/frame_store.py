"""`crossdistill frame-store`: every video of a data config decoded once into its frame store.

Takes the same `--config` files and `--data.*` overrides as `crossdistill fit` (only the `data`
part is used) and, for each modality whose source sets `frame_store`, builds the store entry of
every video of the train, val and test subsets that lacks one (`datamodules.sources.frame_store`):
what the first read of each video in training would do, done ahead, so that the first epoch
reads stored frames too. Entries already complete are kept; damaged ones are rebuilt. Prints a
line per video and modality, then a summary; the exit status is 1 when a video could not be
stored (its file missing or undecodable, or the store not writable), unless the config's
`missing: skip` leaves such videos out of training.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from jsonargparse import ArgumentParser

HELP = "decode every video of a data config once into its frame store (frame_store:)"


def build_parser() -> ArgumentParser:
    from lightning_modules.commands.data_check import data_config_parser

    return data_config_parser(
        "crossdistill frame-store",
        "Decode every video of a data config once, whole, into the frame store of each modality "
        "that sets frame_store (a video source's frames on the square, read by memory map "
        "instead of decoding). Takes the config files of `crossdistill fit`.",
    )


def main(argv: list[str]) -> int:
    from datamodules.annotations import AnnotationError
    from datamodules.sources.base import DataError
    from lightning_modules.commands.data_check import build_data

    parser = build_parser()
    datamodule = build_data(parser, parser.parse_args(argv), "frame-store")
    if datamodule is None:
        return 1
    try:
        records = {
            record.video_id: record
            for role in datamodule.distinct_roles()
            for record in datamodule.subset_records(role)
        }
    except (DataError, AnnotationError) as err:
        print(f"frame-store: the data config cannot be used: {err}", file=sys.stderr)
        return 1
    sources = stored_sources(datamodule.modalities)
    if not sources:
        print(
            "frame-store: no modality of this config sets frame_store. Fix: set "
            "modalities.<name>.init_args.frame_store: true (or a folder) for the VideoSource "
            "and FlowSource modalities to store",
            file=sys.stderr,
        )
        return 1
    failed = fill_stores(sources, sorted(records))
    if not failed:
        print("frame-store: every video stored")
        return 0
    print(f"frame-store: {len(failed)} video(s) could not be stored:", file=sys.stderr)
    for message in failed:
        print(f"  {message}", file=sys.stderr)
    writable = all(source.store.writable() for source in sources.values())
    if datamodule.missing == "skip" and writable:  # only missing or undecodable videos failed
        print("frame-store: with `missing: skip`, training leaves them out", file=sys.stderr)
        return 0
    return 1


def stored_sources(modalities: dict[str, Any]) -> dict[str, Any]:
    """The sources among `modalities` that read their videos through a frame store."""
    from datamodules.sources.video import FramesFromVideo

    return {
        name: source
        for name, source in modalities.items()
        if isinstance(source, FramesFromVideo) and source.store is not None
    }


def fill_stores(sources: dict[str, Any], video_ids: list[str], say: Any = None) -> list[str]:
    """Build the missing entries of every video of every source (`stored_sources`), saying a
    line per video and a summary per source (default: printed); returns the failures."""
    from datamodules.sources.base import DataError

    say = say or (lambda line: print(line, flush=True))

    total = len(video_ids) * len(sources)
    done, failed, started = 0, [], time.perf_counter()
    for name, source in sources.items():
        store = source.store
        say(
            f"frame-store: {name}: {len(video_ids)} videos into {store.folder} ({store.planes} "
            f"planes at {store.size}x{store.size}, {store.backend})"
        )
        counts = {"temporary files of killed writers removed": len(store.sweep())}
        for video_id in video_ids:
            done += 1
            path = source.file(video_id)
            try:
                if not path.is_file():
                    raise DataError(
                        f"{path}: file not found. Fix: restore it, or correct "
                        f"modalities.{name}.init_args.path (`crossdistill data-check` lists "
                        "every problem of the config)"
                    )
                stored, outcome = store.ensure(path)
            except DataError as err:
                failed.append(str(err))
                line = f"FAILED: {err}"
            else:
                kind = outcome.partition(" ")[0]
                counts[kind] = counts.get(kind, 0) + 1
                line = f"{outcome}, {stored.frame_count} frames"
            elapsed = time.perf_counter() - started
            say(f"[{done}/{total}] {name} {video_id}: {line} ({elapsed:.1f} s)")
        summary = ", ".join(f"{kind} {count}" for kind, count in counts.items() if count)
        say(f"frame-store: {name}: {summary or 'nothing to do'}")
    return failed
