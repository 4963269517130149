"""Every file of ../shared/realdata parses, with the counts its README states."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from datamodules.annotations import (
    AnnotationSet,
    read_activitynet,
    read_activitynet_results,
    read_epic_kitchens,
    read_multithumos,
    read_thumos14_txt,
    read_tsu,
)

# Each data file (or folder) of realdata and the call that reads it; licences and readmes aside.
READ = {
    "activitynet/activity_net.v1-3.json": read_activitynet,
    "activitynet/sample_detection_prediction.json": read_activitynet_results,
    "thumos14/thumos14.json": read_activitynet,
    "thumos14/original_txt": read_thumos14_txt,
    "tsu/smarthome_CS_51.json": read_tsu,
    "tsu/smarthome_CV_51.json": read_tsu,
    "multithumos/multithumos.json": read_multithumos,
    "epic_kitchens_100/EPIC_100_validation.csv": read_epic_kitchens,
}
# Read as side files by the readers above.
SIDE_FILES = {
    "tsu/Action_list",
    "epic_kitchens_100/EPIC_100_verb_classes.csv",
    "epic_kitchens_100/EPIC_100_noun_classes.csv",
    "epic_kitchens_100/EPIC_100_video_info.csv",
}
NOT_DATA = {"README.md", "LICENSE", "license.txt", "readme.txt"}
NOT_DATA_SUFFIXES = (".LICENSE",)

_cache: dict[str, AnnotationSet] = {}


def read(realdata: Path, name: str) -> AnnotationSet:
    """Each file is parsed once per session; the readers return immutable records."""
    if name not in _cache:
        _cache[name] = READ[name](realdata / name)
    return _cache[name]


def per_subset(annotations: AnnotationSet) -> dict[str, tuple[int, int]]:
    """subset -> (videos, segments)."""
    videos, segments = Counter(), Counter()
    for record in annotations.records.values():
        videos[record.subset] += 1
        segments[record.subset] += len(record.segments)
    return {subset: (videos[subset], segments[subset]) for subset in videos}


def test_every_real_file_is_read(realdata: Path) -> None:
    """A data file added to realdata without a reader in READ or SIDE_FILES fails here."""
    for file in realdata.rglob("*"):
        if not file.is_file() or file.name in NOT_DATA or file.name.endswith(NOT_DATA_SUFFIXES):
            continue
        name = file.relative_to(realdata).as_posix()
        assert name in SIDE_FILES or any(name == k or name.startswith(f"{k}/") for k in READ), name


@pytest.mark.parametrize("name", sorted(READ))
def test_real_file_parses(realdata: Path, name: str) -> None:
    annotations = read(realdata, name)
    assert annotations.records and annotations.classes
    for record in annotations.records.values():
        for segment in record.segments:
            assert 0 <= segment.start <= segment.end
            assert segment.label in annotations.classes


def test_activitynet_counts_and_quirks(realdata: Path) -> None:
    anet = read(realdata, "activitynet/activity_net.v1-3.json")
    assert per_subset(anet) == {
        "training": (10024, 15410),
        "validation": (4926, 7654),
        "testing": (5044, 0),
    }
    assert len(anet.classes) == 200 and list(anet.classes) == sorted(anet.classes)
    segments = [s for r in anet.records.values() for s in r.segments]
    assert sum(s.start == s.end for s in segments) == 12  # zero-length segments are kept
    duplicates = sum(len(r.segments) - len(set(r.segments)) for r in anet.records.values())
    assert duplicates == 47  # and so are duplicates
    assert "---9CpRcKoU" in anet.records  # ids without the v_ prefix, as written
    assert anet.records["---9CpRcKoU"].duration == pytest.approx(14.07)


def test_sample_prediction_is_the_validation_ground_truth(realdata: Path) -> None:
    anet = read(realdata, "activitynet/activity_net.v1-3.json")
    predictions = read_activitynet_results(
        realdata / "activitynet/sample_detection_prediction.json", anet.classes
    )
    assert per_subset(predictions) == {"results": (4926, 7654)}
    validation = anet.subset("validation").records
    assert predictions.records.keys() == validation.keys()
    for vid, record in predictions.records.items():
        assert all(s.score == 1.0 for s in record.segments)
        bare = [(s.label, s.start, s.end) for s in record.segments]
        assert bare == [(s.label, s.start, s.end) for s in validation[vid].segments]


def test_thumos14_json_counts(realdata: Path) -> None:
    thumos = read(realdata, "thumos14/thumos14.json")
    assert per_subset(thumos) == {"Test": (212, 3358), "Validation": (200, 3007)}
    assert len(thumos.classes) == 20
    assert thumos.classes[0] == "BaseballPitch" and thumos.classes[19] == "VolleyballSpiking"
    assert Counter(r.fps for r in thumos.records.values()) == {
        30.0: 381,
        29.97: 18,
        25.0: 11,
        24.0: 2,
    }


def test_thumos14_txt_counts(realdata: Path) -> None:
    thumos = read(realdata, "thumos14/original_txt")
    # One test video has only ambiguous spans, so the txt has one video the JSON lacks.
    assert per_subset(thumos) == {"Test": (213, 3358), "Validation": (200, 3007)}
    ambiguous = Counter()
    for record in thumos.records.values():
        ambiguous[record.subset] += len(record.ambiguous)
        assert all(s.label == "Ambiguous" for s in record.ambiguous)
    assert ambiguous == {"Test": 99, "Validation": 89}
    assert "Ambiguous" not in thumos.classes and len(thumos.classes) == 20


def test_thumos14_json_and_txt_describe_identical_segments(realdata: Path) -> None:
    from_json = read(realdata, "thumos14/thumos14.json").records
    from_txt = read(realdata, "thumos14/original_txt").records
    assert (
        read(realdata, "thumos14/thumos14.json").classes
        == read(realdata, "thumos14/original_txt").classes
    )
    only_txt = from_txt.keys() - from_json.keys()
    assert only_txt == {"video_test_0001292"}
    assert not from_txt["video_test_0001292"].segments
    assert from_txt["video_test_0001292"].ambiguous
    for vid, record in from_json.items():
        assert from_txt[vid].subset == record.subset
        assert from_txt[vid].segments == record.segments


def test_multithumos_counts(realdata: Path) -> None:
    multithumos = read(realdata, "multithumos/multithumos.json")
    assert per_subset(multithumos) == {"testing": (213, 20208), "training": (200, 18482)}
    assert multithumos.classes == tuple(str(n) for n in range(1, 66))
    assert {s.label for r in multithumos.records.values() for s in r.segments} == set(
        multithumos.classes
    )


@pytest.mark.parametrize(
    ("split", "counts", "test_classes"),
    [
        ("CS", {"training": (351, 26954), "testing": (185, 14334)}, 51),
        ("CV", {"training": (369, 27750), "testing": (167, 13538)}, 33),
    ],
)
def test_tsu_counts(
    realdata: Path, split: str, counts: dict[str, tuple[int, int]], test_classes: int
) -> None:
    tsu = read(realdata, f"tsu/smarthome_{split}_51.json")
    assert per_subset(tsu) == counts
    assert (
        len(tsu.classes) == 51 and tsu.classes[0] == "Enter" and tsu.classes[50] == "Pour.From_can"
    )
    testing = tsu.subset("testing").records.values()
    assert len({s.label for r in testing for s in r.segments}) == test_classes


def test_tsu_frames_become_seconds(realdata: Path) -> None:
    record = read(realdata, "tsu/smarthome_CS_51.json").records["P11T15C01"]
    assert record.fps == 20.0
    assert record.duration == pytest.approx(22760 / 20)
    # The file's first action is [27, 77, 987]: class 27 (0-based) is Use_laptop.
    assert any(
        s.label == "Use_laptop" and s.start == pytest.approx(77 / 20) and s.end == 987 / 20
        for s in record.segments
    )


def test_epic_kitchens_counts(realdata: Path) -> None:
    epic = read(realdata, "epic_kitchens_100/EPIC_100_validation.csv")
    assert per_subset(epic) == {"validation": (138, 9668)}
    assert len(epic.verb_classes) == 97 and len(epic.noun_classes) == 300
    segments = [s for r in epic.records.values() for s in r.segments]
    assert len({s.verb for s in segments}) == 78
    assert len({s.noun for s in segments}) == 211
    assert all(s.label == f"{s.verb} {s.noun}" for s in segments)
    assert set(epic.classes) == {s.label for s in segments}


def test_epic_kitchens_times_and_video_info(realdata: Path) -> None:
    record = read(realdata, "epic_kitchens_100/EPIC_100_validation.csv").records["P01_11"]
    assert record.fps == pytest.approx(59.94, abs=1e-2)
    assert record.duration is not None and record.duration > record.segments[-1].start
    first = record.segments[0]  # P01_11_0: take plate, 00:00:00.00 - 00:00:01.89
    assert (first.label, first.verb, first.noun) == ("take plate", "take", "plate")
    assert (first.start, first.end) == (0.0, pytest.approx(1.89))


def test_epic_kitchens_train_and_validation_files_merge(realdata: Path, tmp_path: Path) -> None:
    """EPIC-KITCHENS-100's train and validation CSVs name different verb-noun pairs but share the
    published verb and noun lists, which the heads index: a data config with both files reads
    them as one dataset (it refused them as two)."""
    from datamodules.datamodule import MultimodalDataModule
    from datamodules.sources import FeatureSource

    source = realdata / "epic_kitchens_100"
    lines = (source / "EPIC_100_validation.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    videos = sorted({row.split(",")[2] for row in rows})
    train_videos = set(videos[: len(videos) // 2])
    root = tmp_path / "epic"
    (root / "annotations").mkdir(parents=True)
    for name in ("verb_classes", "noun_classes", "video_info"):
        target = root / "annotations" / f"EPIC_100_{name}.csv"
        target.write_text((source / f"EPIC_100_{name}.csv").read_text())
    for split, keep in (("train", True), ("validation", False)):
        chosen = [row for row in rows if (row.split(",")[2] in train_videos) == keep]
        (root / "annotations" / f"EPIC_100_{split}.csv").write_text("\n".join([header, *chosen]))
    datamodule = MultimodalDataModule(
        root=str(root),
        modalities={"rgb": FeatureSource(path="features/{video_id}.npy")},
        task="clips",
        annotations=["annotations/EPIC_100_train.csv", "annotations/EPIC_100_validation.csv"],
        annotation_format="epic_kitchens",
        train_subset="train",
        val_subset="validation",
        test_subset="validation",
    )
    merged = datamodule.annotation_set
    assert set(merged.subset_names) == {"train", "validation"}
    assert len(merged.records) == len(videos)
    labels = {s.label for record in merged.records.values() for s in record.segments}
    assert set(merged.classes) == labels and list(merged.classes) == sorted(labels)
    assert len(merged.verb_classes) == 97 and len(merged.noun_classes) == 300
