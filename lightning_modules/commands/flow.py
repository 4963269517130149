"""`crossdistill flow`: optical flow for a folder of videos, in a format FlowSource reads.

    crossdistill flow --videos DIR --out DIR [--method dis|tvl1|raft] [--format video|jpeg]
                      [--workers N] [--size S] [--bound 20] [--weights RAFT.pth]

Every video of `--videos` (mp4, avi, mkv, webm, mov, ...) gets its flow from each frame to the
next, computed on its decoded frames (short side resized to `--size` first, when given):

- `dis`: OpenCV DIS (medium preset), fast on a CPU;
- `tvl1`: OpenCV dual TV-L1, what I3D's and TSN's flow streams were trained on; slow, needs
  `opencv-contrib-python-headless` (the project's OpenCV);
- `raft`: torchvision RAFT (`--raft-model large|small`) with `--weights FILE`, a local copy of
  torchvision's weights (nothing is downloaded), on `--device` (default cuda when available).

Formats (values `128 + flow * 127 / bound`, clipped to [1, 255]):

- `video`: `OUT/<id>.mp4`, lossless RGB H.264, x in red, y in green, one flow frame per video
  frame (the last repeats); config `FlowSource(path: "OUT/{video_id}.mp4", bound: BOUND)`;
- `jpeg`: `OUT/<id>/flow_x_00001.jpg`, `flow_y_00001.jpg`, ... (TSN/I3D/denseflow layout, one pair
  per pair of frames); config `FlowSource(path: "OUT/{video_id}", bound: BOUND, fps: FPS)`.

Resume: outputs are written under `OUT/.partial/` and renamed into place when complete; a rerun
skips videos whose output is complete and redoes the rest. A video that cannot be read is named
in the error (exit status 1) after the others are done. Inputs are never written or deleted.
`OUT/flow.json` records the settings and each video's fps and frame count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "optical flow (DIS, TV-L1, RAFT) for a folder of videos, as flow video or JPEG pairs"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossdistill flow",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--videos", type=Path, required=True, help="folder of videos (read only)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--method", choices=("dis", "tvl1", "raft"), default="dis")
    parser.add_argument("--format", choices=("video", "jpeg"), default="video")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--size", type=int, default=None, help="resize each frame's short side to this first"
    )
    parser.add_argument(
        "--bound", type=float, default=20.0, help="pixels stored as the extreme value (20)"
    )
    parser.add_argument("--weights", type=Path, default=None, help="RAFT weights file")
    parser.add_argument("--raft-model", choices=("large", "small"), default="large")
    parser.add_argument("--device", default=None, help="RAFT's device (default cuda if any)")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="for --format jpeg (95)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from datamodules.flow_extraction import (
        FlowExtractionError,
        FlowSettings,
        extract_folder,
        progress_printer,
    )

    device = args.device
    if device is None:
        device = "cpu"
        if args.method == "raft":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        settings = FlowSettings(
            method=args.method,
            format=args.format,
            bound=args.bound,
            size=args.size,
            weights=args.weights,
            raft_model=args.raft_model,
            device=device,
            jpeg_quality=args.jpeg_quality,
        )
        results = extract_folder(
            args.videos, args.out, settings, args.workers, progress_printer(sys.stdout)
        )
    except (FlowExtractionError, ValueError) as err:
        print(f"crossdistill flow: {err}", file=sys.stderr)
        return 1
    done = sum(not r.skipped for r in results)
    print(
        f"Flow of {len(results)} videos in {args.out} ({done} computed, "
        f"{len(results) - done} already complete); settings in {args.out / 'flow.json'}"
    )
    return 0
