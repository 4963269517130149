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

import cv2
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


# ---------------------------------------------------------------------- EPIC-KITCHENS-100
# the shortest videos of the real validation file: two stay validation videos, the narrations
# of the other two make the train file (the real EPIC_100_train.csv is not in ../shared)
EPIC_VIDEOS = {"validation": ("P03_26", "P26_30"), "train": ("P28_23", "P32_07")}
EPIC_FRAME = (56, 32)  # width, height: EPIC's frames are 456 x 256, a sixteenth of the area kept


def epic_kitchens_100(root: Path, realdata: Path) -> None:
    """The real `EPIC_100_validation.csv` cut to the narrations of a few short videos, some of
    them written as `EPIC_100_train.csv`, the real class and video-info CSVs (video info cut to
    those videos); `rgb_frames/<id>/frame_0000000001.jpg`, ... at EPIC's released rate (50 fps
    for 50-fps videos, else 60) over each video's duration, and `flow_frames/<id>/{u,v}/` at
    half that rate."""
    real = realdata / "epic_kitchens_100"
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    for name in ("EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv"):
        (annotations / name).write_text((real / name).read_text())
    chosen = [video for videos in EPIC_VIDEOS.values() for video in videos]
    _cut_csv(real / "EPIC_100_video_info.csv", annotations / "EPIC_100_video_info.csv", chosen)
    for subset, videos in EPIC_VIDEOS.items():
        _cut_csv(real / "EPIC_100_validation.csv", annotations / f"EPIC_100_{subset}.csv", videos)
    with open(annotations / "EPIC_100_video_info.csv", newline="") as handle:
        info = {row["video_id"]: row for row in csv.DictReader(handle)}
    images = _jpegs(EPIC_FRAME, 4)
    for video in chosen:
        duration, fps = float(info[video]["duration"]), float(info[video]["fps"])
        rate = 50 if round(fps) == 50 else 60
        frames = int(duration * rate)
        _write_frames(root / "rgb_frames" / video, "frame_{:010d}.jpg", frames, images)
        for plane in ("u", "v"):
            _write_frames(
                root / "flow_frames" / video / plane, "frame_{:010d}.jpg", frames // 2, images
            )


def _cut_csv(real: Path, out: Path, videos: Iterable[str]) -> None:
    """The rows of `videos` of a real CSV, as written there (header and quoting kept)."""
    wanted = set(videos)
    lines = real.read_text().splitlines(keepends=True)
    kept = [line for line in lines[1:] if line.split(",", 3)[_video_column(lines[0])] in wanted]
    out.write_text(lines[0] + "".join(kept))


def _video_column(header: str) -> int:
    return header.split(",").index("video_id")


def _jpegs(size: tuple[int, int], count: int) -> list[bytes]:
    """`count` random JPEG images of `size` (width, height), encoded once: frames cycle them."""
    rng = np.random.default_rng(0)
    width, height = size
    return [
        cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))[1].tobytes()
        for _ in range(count)
    ]


def _write_frames(folder: Path, name: str, count: int, images: list[bytes]) -> None:
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        (folder / name.format(number)).write_bytes(images[number % len(images)])


# ---------------------------------------------------------------- Something-Something V2
SSV2_CLASSES = 174
SSV2_FPS = 12  # as the released webm files
SSV2_SIZE = (64, 48)  # width, height: the released clips are 240 px high, width varies
# id: (template index, seconds); the last two are validation clips
SSV2_CLIPS = {"74225": (3, 2.5), "116154": (0, 2.0), "198186": (173, 3.0), "28744": (17, 2.25),
              "1420": (3, 2.0), "160561": (90, 2.5)}  # fmt: skip


def ssv2_template(index: int) -> str:
    """A hand-written template of the released shape (the real ones may not be passed on)."""
    return f"Moving [something] in way {index} with [something]"


def something_something_v2(root: Path) -> None:
    """`annotations/something-something-v2-{labels,train,validation,test}.json` written by hand
    in the released layout (174 templates); `videos/<id>.webm`: VP9 at 12 fps, as released."""
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    labels = {
        ssv2_template(i).replace("[", "").replace("]", ""): str(i) for i in range(SSV2_CLASSES)
    }
    (annotations / "something-something-v2-labels.json").write_text(json.dumps(labels, indent=1))
    ids = list(SSV2_CLIPS)
    for subset, clips in (("train", ids[:-2]), ("validation", ids[-2:])):
        entries = [
            {
                "id": clip,
                "label": ssv2_template(SSV2_CLIPS[clip][0]).replace("[something]", "a cup"),
                "template": ssv2_template(SSV2_CLIPS[clip][0]),
                "placeholders": ["a cup", "a cup"],
            }
            for clip in clips
        ]
        path = annotations / f"something-something-v2-{subset}.json"
        path.write_text(json.dumps(entries, indent=1))
    (annotations / "something-something-v2-test.json").write_text(json.dumps([{"id": "99001"}]))
    rng = np.random.default_rng(0)
    for clip, (_, seconds) in SSV2_CLIPS.items():
        write_webm(root / "videos" / f"{clip}.webm", round(seconds * SSV2_FPS), rng)


def write_webm(path: Path, frames: int, rng: np.random.Generator) -> None:
    """A VP9 webm of `frames` frames at 12 fps: a textured square sliding over noise, so that
    flow has something to follow."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = SSV2_SIZE
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    square = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=SSV2_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = background.copy()
            x = (2 * t) % (width - 16)
            image[16:32, x : x + 16] = square
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
