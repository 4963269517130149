"""`crossdistill synthetic`: generate the synthetic benchmark and print its summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jsonargparse import ArgumentParser

HELP = "generate the synthetic multimodal benchmark on disk"


def build_parser() -> ArgumentParser:
    from datamodules.synthetic.generator import SyntheticConfig

    parser = ArgumentParser(
        prog="crossdistill synthetic",
        description="Generate the synthetic multimodal benchmark (mp4 RGB, flow, pose, boxes, "
        "ActivityNet JSON and Charades CSV annotations). Reuses a complete benchmark generated "
        "from the same options; writes only into an empty folder or over a benchmark it made "
        "itself, and never deletes files it did not write.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_class_arguments(SyntheticConfig, nested_key=None, as_group=False)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU cores)")
    return parser


def main(argv: list[str]) -> int:
    from datamodules.synthetic import generator

    args = build_parser().parse_args(argv)
    out: Path = args.pop("out")
    workers = args.pop("workers")
    config = generator.SyntheticConfig(**args.as_dict())
    summary_path = out / generator.SUMMARY
    if generator.is_complete(out, config) and summary_path.is_file():
        print(f"Synthetic benchmark already complete in {out} (same options); reusing it.\n")
        print(summary_path.read_text())
        return 0
    start = time.perf_counter()
    try:
        records = generator.generate_benchmark(out, config, workers)
    except generator.BenchmarkRootError as err:
        print(f"crossdistill synthetic: {err}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    summary = generator.summarize(records, config.fps)
    summary += f"\n\nGenerated {len(records)} videos in {elapsed:.1f} s.\n"
    summary_path.write_text(summary)
    print(summary)
    print(f"Benchmark written to {out} (manifest: {out / 'benchmark.json'})")
    return 0
