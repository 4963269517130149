"""`crossdistill extract-features`: an encoder's features for whole videos, as `T x D` npy.

The encoder is a TeacherModule checkpoint's (`--checkpoint`, `lightning_modules.teachers`) or a
torchvision backbone with its weights file (`--backbone ARCH --weights FILE`, a frozen
`TorchvisionVideoEncoder` on `--modality rgb` or `flow`). It runs over every video of the data
config's subsets, on the data's grid or, with `--snippet-frames W --snippet-stride S`, as
I3D-style snippets (one feature per S frames from the W frames starting there); the features
and their `meta.json` go into a folder built beside `--out`, swapped in at the end. The folder's
layout and what it guarantees are described in `lightning_modules.feature_extraction`.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentParser

from lightning_modules.commands.data_check import data_config_parser

HELP = "write an encoder's T x D features for whole videos (checkpoint or torchvision backbone)"


def build_parser() -> ArgumentParser:
    parser = data_config_parser(
        "crossdistill extract-features",
        "Run an encoder (a TeacherModule checkpoint's, or a torchvision backbone with local "
        "weights) over whole videos and write T x D npy features per video plus meta.json.",
    )
    parser.add_argument(
        "--checkpoint", type=Path | None, default=None, help="TeacherModule checkpoint"
    )
    parser.add_argument(
        "--backbone",
        type=Literal["r3d_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"] | None,
        default=None,
        help="a torchvision video network instead of a checkpoint (needs --weights)",
    )
    parser.add_argument(
        "--weights", type=Path | None, default=None, help="the backbone's state-dict file"
    )
    parser.add_argument(
        "--modality",
        type=Literal["rgb", "flow"],
        default="rgb",
        help="what the backbone reads (flow: a 2-channel first convolution)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--pool", type=int, default=1, help="grid steps averaged per feature")
    parser.add_argument(
        "--snippet-frames",
        type=int | None,
        default=None,
        help="I3D-style snippets: frames per feature (with --snippet-stride)",
    )
    parser.add_argument(
        "--snippet-stride", type=int | None, default=None, help="frames between snippets"
    )
    parser.add_argument(
        "--fps",
        type=float | None,
        default=None,
        help="frame rate snippets are counted at (default: each video's annotated fps)",
    )
    return parser


def _usage_error(config: Any, datamodule: Any) -> str | None:
    """What is wrong with the flags, with the fix; None when they are fine."""
    if (config.checkpoint is None) == (config.backbone is None):
        return (
            "give exactly one encoder: --checkpoint TEACHER.ckpt, or --backbone ARCH --weights "
            "FILE (a torchvision network with its saved weights)"
        )
    if config.backbone is None and config.weights is not None:
        return "--weights goes with --backbone; a checkpoint holds its own weights"
    if config.backbone is not None and config.weights is None:
        return (
            f"--backbone {config.backbone} needs --weights FILE: save torchvision's weights on a "
            f"machine with internet, torch.save(torchvision.models.video.{config.backbone}("
            "weights='KINETICS400_V1').state_dict(), FILE), and copy the file here"
        )
    if config.backbone is not None and config.modality not in datamodule.modalities:
        return (
            f"the data loads {sorted(datamodule.modalities)}, not {config.modality!r}. Fix: add "
            f"--data.init_args.load '[{config.modality}]'"
        )
    snippets = (config.snippet_frames, config.snippet_stride)
    if (snippets[0] is None) != (snippets[1] is None):
        return "give --snippet-frames and --snippet-stride together"
    if snippets[0] is not None and min(snippets) < 1:
        return f"snippet frames and stride must be positive, got {snippets[0]}, {snippets[1]}"
    if snippets[0] is not None and config.pool != 1:
        return "--pool averages grid steps; with snippets, set --snippet-stride instead"
    if snippets[0] is None and config.fps is not None:
        return "--fps counts snippet frames; give --snippet-frames and --snippet-stride too"
    if datamodule.task_data.per_clip:
        return (
            f"the data's task {datamodule.task!r} cuts one window per clip; use a dense or "
            "segments data config (evaluation tiles over whole videos)"
        )
    if snippets[0] is None and datamodule.window_seconds is None:
        return "set window_seconds; the features need one stride for all videos"
    return None


def _encoder(config: Any) -> tuple[Any, dict[str, Any]]:
    """The encoder the flags name, and what meta.json records of it."""
    from datamodules.sources.integrity import DIGEST, file_digest

    if config.checkpoint is not None:
        from lightning_modules.teachers import load_teacher_module

        encoder = load_teacher_module(config.checkpoint).model.encoder
        recorded = {
            "checkpoint": str(config.checkpoint),
            f"checkpoint_{DIGEST}": file_digest(config.checkpoint),
        }
    else:
        from lightning_modules.models.torchvision_video import TorchvisionVideoEncoder

        encoder = TorchvisionVideoEncoder(
            config.backbone,
            modality=config.modality,
            in_channels=2 if config.modality == "flow" else 3,
            pretrained=str(config.weights),
            freeze=True,
        )
        recorded = {
            "backbone": config.backbone,
            "modality": config.modality,
            "weights": str(config.weights),
            f"weights_{DIGEST}": file_digest(config.weights),
        }
    name = f"{type(encoder).__module__}.{type(encoder).__name__}"
    return encoder, {"encoder": name, **recorded}


def main(argv: list[str]) -> int:
    from datamodules.sources import DataError
    from datamodules.sources.features import META
    from datamodules.sources.integrity import write_json_atomic
    from lightning_modules.feature_extraction import (
        SnippetSpec,
        check_replaceable,
        extract_features,
        progress_printer,
        swap_in,
    )

    parser = build_parser()
    config = parser.parse_args(argv)
    datamodule = parser.instantiate(config).data
    if problem := _usage_error(config, datamodule):
        print(f"extract-features: {problem}", file=sys.stderr)
        return 2
    out: Path = config.out
    try:
        encoder, recorded = _encoder(config)
        check_replaceable(out)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"extract-features: {err}", file=sys.stderr)
        return 1
    snippets = None
    if config.snippet_frames is not None:
        snippets = SnippetSpec(config.snippet_stride, config.snippet_frames, config.fps)
    staging = out.parent / f".{out.name}.building"
    if staging.exists():
        shutil.rmtree(staging)  # left by a killed run of this command
    files: dict[str, dict] = {}
    try:
        features = extract_features(
            encoder, datamodule, staging, config.pool, files, snippets, progress_printer()
        )
    except DataError as err:
        print(f"extract-features: {err}", file=sys.stderr)
        return 1
    if snippets is not None:
        rates = {snippets.fps or r.fps for r in datamodule.annotation_set.records.values()}
        fps = rates.pop() if len(rates) == 1 else None  # None: each video's annotated rate
        stride, window = snippets.stride, snippets.window
    else:
        example = next(iter(datamodule.annotation_set.records.values()))
        stride_s = datamodule.window_seconds / datamodule.window_steps
        fps = float(example.fps or 0) or 1.0 / stride_s
        stride = window = round(stride_s * fps) * config.pool
    meta = {
        "fps": fps,
        "stride": stride,
        "window": window,
        "snippets": snippets is not None,
        "feature_dim": int(next(iter(features.values())).shape[1]),
        "videos": len(features),
        **recorded,
        "data_root": str(datamodule.root),
        "command": shlex.join(["crossdistill", "extract-features", *argv]),
        "files": files,
    }
    write_json_atomic(staging / META, meta)
    swap_in(staging, out)
    print(f"wrote features of {len(features)} videos ({meta['feature_dim']}-d) to {out}")
    print(feature_source_snippet(out, meta))
    return 0


def feature_source_snippet(out: Path, meta: dict[str, Any]) -> str:
    """The data-config lines of a `FeatureSource` that reads the folder back."""
    settings = f"stride: {meta['stride']}, window: {meta['window']}"
    if meta["fps"] is not None:
        settings += f", fps: {meta['fps']:g}"
    name = meta.get("modality", "features")
    return (
        "read them with (data config, under modalities):\n"
        f"  {name}:\n"
        "    class_path: datamodules.sources.FeatureSource\n"
        f"    init_args: {{path: {out}/{{video_id}}.npy, {settings}}}"
    )
