"""Small datasets in the exact layouts the real data configs read (configs/data/real/*.yaml):
the real annotation files of ../shared/realdata cut to a few videos (Charades and PKU-MMD,
whose licences forbid passing the files on, written by hand in their exact formats) and random
features of the real widths, as many rows as the real extraction gives for each video's
duration. Each builder fills `root` (the data config's `root`, e.g. `data/charades`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from datamodules.annotations import read_activitynet
from datamodules.grid import expected_features

I3D = 1024
POSE = 256
PER_SUBSET = 3  # videos per subset cut from a real file


def write_features(
    folder: Path, durations: dict[str, float], width: int, fps: float, stride: int, seed: int
) -> None:
    """One `(T, width)` float32 file per video, T the features of `window = stride` frames every
    `stride` frames at `fps` over its duration (seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for video, duration in durations.items():
        rows = expected_features(duration, fps, stride, stride)
        np.save(folder / f"{video}.npy", rng.standard_normal((rows, width)).astype(np.float32))


def shortest(videos: dict[str, dict], subsets: Iterable[str], duration: Callable) -> list[str]:
    """The `PER_SUBSET` shortest videos with labels of each subset, for a fast fixture."""
    chosen = []
    for subset in subsets:
        labelled = [k for k, v in videos.items() if v["subset"] == subset and _labelled(v)]
        chosen += sorted(labelled, key=lambda k: (duration(videos[k]), k))[:PER_SUBSET]
    return chosen


def _labelled(video: dict) -> bool:
    return bool(video.get("annotations") or video.get("actions"))


# ---------------------------------------------------------------------------- Charades
CHARADES_CLASSES = 157
CHARADES_COLUMNS = (
    "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"
).split(",")
# id: length (s), actions `cXXX start end` (seconds); the last two are test videos
CHARADES_VIDEOS = {
    "46GP8": (24.83, "c092 11.90 21.20;c147 0.00 12.60"),
    "N11GT": (31.2, "c098 8.60 14.20;c075 0.00 11.70;c010 15.0 31.2"),
    "0IH69": (18.4, "c000 2.1 9.4"),
    "KRF68": (28.05, "c151 0.00 11.70;c092 5.4 22.8"),
    "YA10S": (20.5, "c010 0.0 8.2;c000 6.0 19.9"),
    "EY6P4": (33.7, ""),  # a video without actions, as Charades has
}


def charades(root: Path) -> None:
    """`annotations/Charades_v1_{train,test}.csv` and `Charades_v1_classes.txt`, written by
    hand in the official layout; `i3d_rgb/`, `i3d_flow/`: one 1024-d feature per 8 frames (16-
    frame windows) at 24 fps."""
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    names = [f"c{i:03d} Doing thing number {i} with something" for i in range(CHARADES_CLASSES)]
    (annotations / "Charades_v1_classes.txt").write_text("\n".join(names) + "\n")
    ids = list(CHARADES_VIDEOS)
    for subset, videos in (("train", ids[:-2]), ("test", ids[-2:])):
        with open(annotations / f"Charades_v1_{subset}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CHARADES_COLUMNS)
            for video in videos:
                length, actions = CHARADES_VIDEOS[video]
                writer.writerow([
                    video, "HR43", "Kitchen", 6, 7, "Yes",
                    "A person opens a cabinet, then takes a cup.", "cabinet;cup",
                    "A person opened a cabinet, took out a cup and drank from it.", actions,
                    f"{length:.2f}",
                ])  # fmt: skip
    durations = {video: length for video, (length, _) in CHARADES_VIDEOS.items()}
    for seed, modality in enumerate(("i3d_rgb", "i3d_flow")):
        write_features(root / modality, durations, I3D, 24.0, 8, seed)


# ---------------------------------------------------------------------------------- TSU
TSU_FPS = 20.0


def tsu(root: Path, realdata: Path, protocol: str = "CS") -> None:
    """The real `smarthome_{CS,CV}_51.json` cut to a few training and testing videos of
    `protocol` (both files, so either split reads), the real `Action_list`; `i3d_rgb/`,
    `i3d_flow/` (1024-d) and `pose/` (256-d), one feature per 16 frames at 20 fps."""
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "Action_list").write_text((realdata / "tsu" / "Action_list").read_text())
    full = {
        p: json.loads((realdata / "tsu" / f"smarthome_{p}_51.json").read_text())
        for p in ("CS", "CV")
    }
    chosen = shortest(full[protocol], ("training", "testing"), lambda v: v["duration"])
    for name, videos in full.items():
        cut = {k: v for k, v in videos.items() if k in chosen}
        (annotations / f"smarthome_{name}_51.json").write_text(json.dumps(cut))
    durations = {k: full[protocol][k]["duration"] / TSU_FPS for k in chosen}
    for seed, (modality, width) in enumerate((("i3d_rgb", I3D), ("i3d_flow", I3D), ("pose", POSE))):
        write_features(root / modality, durations, width, TSU_FPS, 16, seed)


# ------------------------------------------------------------------------------ PKU-MMD
PKU_FPS = 30.0
# sequence-view: frames, label lines `class,start_frame,end_frame,confidence`; split by hand
# into the cross-subject folders the data config reads (the last two are test sequences)
PKU_VIDEOS = {
    "0002-L": (1620, ["41,50,210,1", "8,260,402,2", "51,1400,1580,1"]),
    "0002-M": (1620, ["41,48,212,1", "8,258,400,1"]),
    "0003-R": (1805, ["1,30,180,1", "13,700,905,2"]),
    "0291-L": (1490, ["41,62,230,1", "22,900,1101,1"]),
    "0291-M": (1490, ["41,60,228,2", "30,320,480,1"]),
}


def pku_mmd(root: Path) -> None:
    """PKU-MMD label files (`0002-L.txt`, 30 fps, classes 1-51) written by hand under
    `annotations/train/` and `annotations/test/`; `i3d_rgb/`, `i3d_flow/` (1024-d) and `pose/`
    (256-d), one feature per 16 frames at 30 fps."""
    ids = list(PKU_VIDEOS)
    for subset, videos in (("train", ids[:-2]), ("test", ids[-2:])):
        folder = root / "annotations" / subset
        folder.mkdir(parents=True)
        for video in videos:
            (folder / f"{video}.txt").write_text("\n".join(PKU_VIDEOS[video][1]) + "\n")
    durations = {video: frames / PKU_FPS for video, (frames, _) in PKU_VIDEOS.items()}
    for seed, (modality, width) in enumerate((("i3d_rgb", I3D), ("i3d_flow", I3D), ("pose", POSE))):
        write_features(root / modality, durations, width, PKU_FPS, 16, seed)


# ----------------------------------------------------------------- THUMOS14, ActivityNet
def thumos14(root: Path, realdata: Path) -> None:
    """The real ActionFormer-style `thumos14.json` cut to a few Validation (training) and Test
    videos; `i3d_features/<video>.npy`: 2048-d two-stream I3D (RGB 0-1023, flow 1024-2047), one
    feature per 4 frames (16-frame windows) at 30 fps."""
    full = json.loads((realdata / "thumos14" / "thumos14.json").read_text())
    videos = full["database"]
    chosen = shortest(videos, ("Validation", "Test"), lambda v: v["duration"])
    _write_json(
        root / "annotations" / "thumos14.json", realdata / "thumos14" / "thumos14.json", chosen
    )
    durations = {k: videos[k]["duration"] for k in chosen}
    rng = np.random.default_rng(0)
    folder = root / "i3d_features"
    folder.mkdir(parents=True)
    for video, duration in durations.items():
        rows = expected_features(duration, 30.0, 4, 16)
        np.save(folder / f"{video}.npy", rng.standard_normal((rows, 2 * I3D)).astype(np.float32))


ACTIVITYNET_FEATURE_FPS = 30.0  # resampled to 192 steps, so any rate reads; a common one


def activitynet(root: Path, realdata: Path) -> None:
    """The real v1.3 JSON cut to a few training and validation videos; `i3d_features/v_<id>.npy`:
    2048-d two-stream I3D, one feature per 16 frames at 30 fps (any length: resampled)."""
    full = json.loads((realdata / "activitynet" / "activity_net.v1-3.json").read_text())
    videos = full["database"]
    chosen = shortest(videos, ("training", "validation"), lambda v: v["duration"])
    _write_json(
        root / "annotations" / "activity_net.v1-3.json",
        realdata / "activitynet" / "activity_net.v1-3.json",
        chosen,
    )
    durations = {f"v_{k}": videos[k]["duration"] for k in chosen}
    write_features(root / "i3d_features", durations, 2 * I3D, ACTIVITYNET_FEATURE_FPS, 16, 0)


def _write_json(path: Path, real: Path, chosen: list[str]) -> None:
    """The real file with only the `chosen` videos, and a top-level `classes` list: the
    vocabulary of the whole file (a few videos hold only some of its classes)."""
    full = json.loads(real.read_text())
    cut = {**full, "database": {k: full["database"][k] for k in chosen}}
    cut["classes"] = list(read_activitynet(real).classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cut))
