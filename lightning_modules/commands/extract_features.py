"""`crossdistill extract-features`: a trained encoder's features for whole videos, as `T x D` npy.

Loads the encoder of a TeacherModule checkpoint (`lightning_modules.teachers`), runs it over
every video of the data config's subsets, writes the features and their `meta.json` into a
folder built beside `--out`, and swaps it in at the end. The folder's layout and what it
guarantees are described in `lightning_modules.feature_extraction`.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from lightning_modules.commands.data_check import data_config_parser

HELP = "write a trained encoder's T x D features for whole videos"


def build_parser() -> ArgumentParser:
    parser = data_config_parser(
        "crossdistill extract-features",
        "Run a trained encoder (from a TeacherModule checkpoint) over whole videos and write "
        "T x D npy features per video plus meta.json.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="TeacherModule checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--pool", type=int, default=1, help="grid steps averaged per feature")
    return parser


def main(argv: list[str]) -> int:
    from datamodules.sources import DataError
    from datamodules.sources.features import META
    from datamodules.sources.integrity import DIGEST, file_digest, write_json_atomic
    from lightning_modules.feature_extraction import check_replaceable, extract_features, swap_in
    from lightning_modules.teachers import load_teacher_module

    parser = build_parser()
    config = parser.parse_args(argv)
    datamodule = parser.instantiate(config).data
    if datamodule.task_data.per_clip:
        print(
            f"extract-features: the data's task {datamodule.task!r} cuts one window per clip; "
            "use a dense or segments data config (evaluation tiles over whole videos)",
            file=sys.stderr,
        )
        return 2
    if datamodule.window_seconds is None:
        print(
            "extract-features: set window_seconds; the features need one stride for all videos",
            file=sys.stderr,
        )
        return 2
    module = load_teacher_module(config.checkpoint)
    encoder = module.model.encoder
    out: Path = config.out
    try:
        check_replaceable(out)
    except DataError as err:
        print(f"extract-features: {err}", file=sys.stderr)
        return 1
    staging = out.parent / f".{out.name}.building"
    if staging.exists():
        shutil.rmtree(staging)  # left by a killed run of this command
    files: dict[str, dict] = {}
    features = extract_features(encoder, datamodule, staging, config.pool, files)
    example = next(iter(datamodule.annotation_set.records.values()))
    stride_s = datamodule.window_seconds / datamodule.window_steps
    fps = float(example.fps or 0) or 1.0 / stride_s
    frames = round(stride_s * fps) * config.pool
    meta = {
        "fps": fps,
        "stride": frames,
        "window": frames,
        "feature_dim": int(next(iter(features.values())).shape[1]),
        "videos": len(features),
        "encoder": f"{type(encoder).__module__}.{type(encoder).__name__}",
        "checkpoint": str(config.checkpoint),
        f"checkpoint_{DIGEST}": file_digest(config.checkpoint),
        "data_root": str(datamodule.root),
        "command": shlex.join(["crossdistill", "extract-features", *argv]),
        "files": files,
    }
    write_json_atomic(staging / META, meta)
    swap_in(staging, out)
    print(f"wrote features of {len(features)} videos ({meta['feature_dim']}-d) to {out}")
    return 0
