"""Each reader on tiny hand-written files in its exact format, and the errors bad files get."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from datamodules.annotations import (
    AnnotationError,
    Segment,
    read_activitynet,
    read_activitynet_results,
    read_annotations,
    read_charades,
    read_epic_kitchens,
    read_multithumos,
    read_pku_mmd,
    read_something_something,
    read_thumos14_txt,
    read_tsu,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    return write(path, json.dumps(data))


# --- Charades ---------------------------------------------------------------------------------

CHARADES_CLASSES = "c000 Holding some clothes\nc001 Putting clothes somewhere\nc002 Sitting down\n"
CHARADES_HEADER = (
    "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
)
CHARADES_CSV = CHARADES_HEADER + (
    '46GP8,HR43,Kitchen,6,7,Yes,"A person, holding clothes, sits down.",clothes;chair,'
    '"A person holds clothes, then sits.",c000 0.00 11.90;c002 8.60 14.30,24.83\n'
    'N11GT,0KZ7,Stairs,6,7,Yes,"Someone stands still.",,"Nothing, really.",,18.46\n'
    'XKJ5M,ZX34,Bedroom,7,6,Yes,"A person puts clothes away.",clothes,'
    '"The person puts the clothes\nin a drawer.",c001 3.10 7.40,9.20\n'
)


def charades_files(folder: Path, csv_text: str = CHARADES_CSV) -> Path:
    write(folder / "Charades_v1_classes.txt", CHARADES_CLASSES)
    return write(folder / "Charades_v1_train.csv", csv_text)


def test_charades_quoted_commas_empty_actions_and_classes(tmp_path: Path) -> None:
    charades = read_charades(charades_files(tmp_path))
    assert charades.classes == (
        "Holding some clothes",
        "Putting clothes somewhere",
        "Sitting down",
    )
    assert list(charades.records) == ["46GP8", "N11GT", "XKJ5M"]
    first = charades.records["46GP8"]
    assert (first.subset, first.duration) == ("train", 24.83)
    assert first.segments == (
        Segment("Holding some clothes", 0.0, 11.9),
        Segment("Sitting down", 8.6, 14.3),
    )
    assert charades.records["N11GT"].segments == ()  # empty `actions`
    assert charades.records["XKJ5M"].segments == (Segment("Putting clothes somewhere", 3.1, 7.4),)


def test_charades_synthetic_layout_finds_its_class_list(tmp_path: Path) -> None:
    """The synthetic benchmark writes charades_<subset>.csv next to charades_classes.txt."""
    write(tmp_path / "charades_classes.txt", "c000 walk_left\nc001 wave\n")
    csv_path = write(
        tmp_path / "charades_validation.csv",
        CHARADES_HEADER + "vid_0001,synthetic,s,7,7,Yes,x,,x,c001 0.50 1.25,3.00\n",
    )
    synthetic = read_annotations(csv_path, "charades")
    assert synthetic.classes == ("walk_left", "wave")
    assert synthetic.records["vid_0001"].subset == "validation"
    assert synthetic.records["vid_0001"].segments == (Segment("wave", 0.5, 1.25),)


def test_charades_unknown_class_names_file_video_label_and_fix(tmp_path: Path) -> None:
    csv_path = charades_files(
        tmp_path, CHARADES_HEADER + "AB12C,S,K,6,7,Yes,x,,x,c000 0 1;c157 2.0 3.0,5\n"
    )
    with pytest.raises(AnnotationError) as error:
        read_charades(csv_path)
    message = str(error.value)
    assert str(csv_path) in message and "'AB12C'" in message and "'c157'" in message
    assert "Charades_v1_classes.txt" in message and "Fix:" in message


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("AB12C,S,K,6,7,Yes,x,,x,c000 1.0,5\n", "is not `cXXX start end`"),
        ("AB12C,S,K,6,7,Yes,a, b,,x,c000 0 1,5\n", "does not have the header's 11 fields"),
        ("AB12C,S,K,6,7,Yes,x,,x,c000 0 1,\n", "length is '', not a number"),
        ("AB12C,S,K,6,7,Yes,x,,x,c000 4.0 2.5,5\n", "ends at 2.5 s, before its start at 4 s"),
    ],
)
def test_charades_malformed_rows(tmp_path: Path, row: str, problem: str) -> None:
    csv_path = charades_files(tmp_path, CHARADES_HEADER + row)
    with pytest.raises(AnnotationError, match=re.escape(problem)) as error:
        read_charades(csv_path)
    assert f"{csv_path}:2:" in str(error.value)


def test_charades_missing_class_list(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "Charades_v1_test.csv", CHARADES_CSV)
    with pytest.raises(FileNotFoundError, match=r"Charades_v1_classes\.txt.*Fix: .*classes_file="):
        read_charades(csv_path)


# --- Something-Something V2 -------------------------------------------------------------------

SSV2_LABELS = {
    "Approaching something with your camera": "0",
    "Spinning something that quickly stops spinning": "1",
    "Putting something into something": "2",
}


def ssv2_files(folder: Path) -> Path:
    write_json(folder / "something-something-v2-labels.json", SSV2_LABELS)
    write_json(
        folder / "something-something-v2-validation.json",
        [
            {
                "id": "74225",
                "label": "spinning cube that quickly stops spinning",
                "template": "Spinning [something] that quickly stops spinning",
                "placeholders": ["cube"],
            },
            {
                "id": "1",
                "label": "putting a pen into a cup",
                "template": "Putting [something] into [something]",
                "placeholders": ["a pen", "a cup"],
            },
        ],
    )
    write_json(folder / "something-something-v2-test.json", [{"id": "1420"}, {"id": "99"}])
    return folder


def test_something_something_clips(tmp_path: Path) -> None:
    folder = ssv2_files(tmp_path)
    validation = read_something_something(folder / "something-something-v2-validation.json")
    assert validation.classes == tuple(SSV2_LABELS)
    clip = validation.records["74225"]
    assert (clip.subset, clip.duration, clip.segments) == ("validation", None, ())
    assert clip.clip_label == "Spinning something that quickly stops spinning"
    assert validation.records["1"].clip_label == "Putting something into something"
    test = read_something_something(folder / "something-something-v2-test.json")
    assert [(r.video_id, r.subset, r.clip_label) for r in test.records.values()] == [
        ("1420", "test", None),
        ("99", "test", None),
    ]


def test_something_something_unknown_template(tmp_path: Path) -> None:
    folder = ssv2_files(tmp_path)
    clips = write_json(
        folder / "something-something-v2-train.json",
        [{"id": "7", "label": "x", "template": "Juggling [something]", "placeholders": ["x"]}],
    )
    with pytest.raises(AnnotationError) as error:
        read_something_something(clips)
    message = str(error.value)
    assert str(clips) in message and "'7'" in message and "'Juggling something'" in message
    assert "something-something-v2-labels.json" in message and "Fix:" in message


def test_something_something_labels_must_count_from_zero(tmp_path: Path) -> None:
    folder = ssv2_files(tmp_path)
    write_json(folder / "something-something-v2-labels.json", {"A": "0", "B": "2"})
    with pytest.raises(AnnotationError, match="indices are not 0, 1, 2"):
        read_something_something(folder / "something-something-v2-test.json")


# --- PKU-MMD ----------------------------------------------------------------------------------


def pku_folder(folder: Path) -> Path:
    write(folder / "0002-L.txt", "41,39,149,1\n51,170,275,2\n1,290,386,1\n")
    write(folder / "0002-M.txt", "41,40,150,2\n\n")
    return folder


def test_pku_mmd_folder(tmp_path: Path) -> None:
    pku = read_pku_mmd(pku_folder(tmp_path))
    assert pku.classes == tuple(str(n) for n in range(1, 52))
    assert list(pku.records) == ["0002-L", "0002-M"]
    left = pku.records["0002-L"]
    assert (left.subset, left.fps, left.duration) == ("all", 30.0, None)
    assert left.segments == (
        Segment("41", 39 / 30, 149 / 30),
        Segment("51", 170 / 30, 275 / 30),
        Segment("1", 290 / 30, 386 / 30),
    )


def test_pku_mmd_with_class_names(tmp_path: Path) -> None:
    names = write(tmp_path / "classes.txt", "".join(f"{n} action {n}\n" for n in range(1, 52)))
    pku = read_pku_mmd(pku_folder(tmp_path / "labels"), class_list=names, subset="train")
    assert pku.classes[0] == "action 1" and pku.classes[-1] == "action 51"
    assert pku.records["0002-M"].segments[0].label == "action 41"
    assert pku.records["0002-M"].subset == "train"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("52,10,20,1", "class '52' is not one of the 51 classes"),
        ("0,10,20,1", "class '0' is not one of the 51 classes"),
        ("3,10,20", "expected `class,start_frame,end_frame,confidence`"),
        ("3,30,20,1", "ends at 20 frames, before its start at 30 frames"),
    ],
)
def test_pku_mmd_bad_lines(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path / "0005-R.txt", f"3,1,2,1\n{line}\n")
    with pytest.raises(AnnotationError, match=re.escape(problem)) as error:
        read_pku_mmd(tmp_path)
    assert f"{path}:2: video '0005-R':" in str(error.value)


def test_pku_mmd_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no PKU-MMD label files"):
        read_pku_mmd(tmp_path)


# --- ActivityNet layout: ActivityNet, ActionFormer JSON, the synthetic benchmark ----------------


def test_synthetic_benchmark_json_uses_its_classes_list(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "annotations" / "activitynet.json",
        {
            "version": "crossdistill-synthetic-1",
            "classes": ["walk_left", "wave", "jump"],
            "database": {
                "vid_0000": {
                    "subset": "training",
                    "duration": 6.4,
                    "fps": 10.0,
                    "annotations": [
                        {"segment": [2.5, 4.0], "label": "wave"},
                        {"segment": [0.0, 1.5], "label": "walk_left"},
                    ],
                },
                "vid_0001": {"subset": "testing", "duration": 3.0, "fps": 10.0, "annotations": []},
            },
        },
    )
    synthetic = read_annotations(path, "activitynet")
    assert synthetic.classes == ("walk_left", "wave", "jump")  # unused `jump` kept, order kept
    record = synthetic.records["vid_0000"]
    assert (record.subset, record.duration, record.fps) == ("training", 6.4, 10.0)
    assert record.segments == (Segment("walk_left", 0.0, 1.5), Segment("wave", 2.5, 4.0))
    assert synthetic.subset_names == ("training", "testing")
    assert list(synthetic.subset("testing").records) == ["vid_0001"]


def activitynet_file(path: Path, annotations: list[dict], **top: object) -> Path:
    database = {"abc": {"subset": "validation", "duration": 10.0, "annotations": annotations}}
    return write_json(path, {"version": "VERSION 1.3", **top, "database": database})


def test_activitynet_vocabulary_is_taxonomy_leaves(tmp_path: Path) -> None:
    taxonomy = [
        {"nodeId": 1, "nodeName": "Root", "parentId": None, "parentName": None},
        {"nodeId": 2, "nodeName": "Sports", "parentId": 1, "parentName": "Root"},
        {"nodeId": 3, "nodeName": "Long jump", "parentId": 2, "parentName": "Sports"},
        {"nodeId": 4, "nodeName": "Dodgeball", "parentId": 2, "parentName": "Sports"},
    ]
    path = activitynet_file(
        tmp_path / "anet.json", [{"segment": [1, 2], "label": "Dodgeball"}], taxonomy=taxonomy
    )
    assert read_activitynet(path).classes == ("Dodgeball", "Long jump")
    bad = activitynet_file(
        tmp_path / "bad.json", [{"segment": [1, 2], "label": "Sports"}], taxonomy=taxonomy
    )
    with pytest.raises(AnnotationError, match="label 'Sports' is not one of the 2 classes"):
        read_activitynet(bad)


def test_activitynet_label_id_orders_the_classes(tmp_path: Path) -> None:
    annotations = [
        {"segment": [1, 2], "label": "Zumba", "label_id": 0},
        {"segment": [3, 4], "label": "Archery", "label_id": 1},
    ]
    path = activitynet_file(tmp_path / "mt.json", annotations)
    assert read_activitynet(path).classes == ("Zumba", "Archery")
    clash = activitynet_file(
        tmp_path / "clash.json", [*annotations, {"segment": [5, 6], "label": "Yoga", "label_id": 1}]
    )
    with pytest.raises(AnnotationError, match=r"a label_id names several labels.*Fix: add"):
        read_activitynet(clash)


def test_activitynet_unknown_label_names_file_video_label_and_fix(tmp_path: Path) -> None:
    path = activitynet_file(
        tmp_path / "activitynet.json",
        [{"segment": [1.0, 2.0], "label": "Moonwalk"}],
        classes=["Walk", "Run"],
    )
    with pytest.raises(AnnotationError) as error:
        read_activitynet(path)
    assert str(error.value) == (
        f"{path}: video 'abc': label 'Moonwalk' is not one of the 2 classes of the \"classes\" "
        'list of activitynet.json. Fix: correct the label, or add it to the "classes" list of '
        "activitynet.json"
    )


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        ({"segment": [5.0, 3.0], "label": "A"}, "segment ends at 3 s, before its start at 5 s"),
        ({"segment": [-1.0, 3.0], "label": "A"}, "segment starts at -1 s, before the video"),
        ({"segment": [5.0], "label": "A"}, "is not {'segment': [start, end], 'label': name}"),
        ({"segment": [1.0, "x"], "label": "A"}, "segment end is 'x', not a number"),
        ({"segment": [1.0, 2.0]}, "is not {'segment': [start, end], 'label': name}"),
    ],
)
def test_activitynet_malformed_segments(tmp_path: Path, annotation: dict, problem: str) -> None:
    path = activitynet_file(tmp_path / "a.json", [annotation])
    with pytest.raises(AnnotationError, match=re.escape(problem)) as error:
        read_activitynet(path)
    assert str(error.value).startswith(f"{path}: video 'abc':")


def test_activitynet_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.json\. Fix: check the path"):
        read_activitynet(tmp_path / "nothing.json")
    broken = write(tmp_path / "broken.json", '{"database": {\n  "abc": }')
    with pytest.raises(AnnotationError, match=r"broken\.json:2: not valid JSON"):
        read_activitynet(broken)
    results = write_json(tmp_path / "results.json", {"results": {}})
    with pytest.raises(AnnotationError, match=r'no top-level "database".*evaluate --predictions'):
        read_activitynet(results)


def test_duplicates_and_byte_order_marks(tmp_path: Path) -> None:
    """A video listed twice (Charades CSV) or a key twice in a JSON object used to keep the last
    entry silently; a UTF-8 byte-order mark (Excel's CSVs) is not part of the first column."""
    twice = CHARADES_CSV + CHARADES_CSV.splitlines(keepends=True)[2]
    with pytest.raises(
        AnnotationError,
        match=r"train\.csv:6: video 'N11GT': the video is listed twice \(lines 3 and 6\)",
    ):
        read_charades(charades_files(tmp_path / "twice", twice))
    bom = read_charades(charades_files(tmp_path / "bom", "\ufeff" + CHARADES_CSV))
    assert list(bom.records) == ["46GP8", "N11GT", "XKJ5M"]
    text = '{"database": {"abc": {"subset": "training", "annotations": []}, "abc": {}}}'
    path = write(tmp_path / "dup.json", text)
    with pytest.raises(AnnotationError, match=r"the key 'abc' appears twice in one object"):
        read_activitynet(path)
    path = write(tmp_path / "bom.json", "\ufeff" + json.dumps({"database": {}}))
    assert read_activitynet(path).records == {}


def test_activitynet_results_with_ground_truth_classes(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "results.json",
        {
            "version": "VERSION 1.3",
            "results": {"abc": [{"label": "Run", "score": 0.25, "segment": [2.0, 3.0]}]},
            "external_data": {},
        },
    )
    results = read_activitynet_results(path, classes=["Walk", "Run"])
    assert results.records["abc"].segments == (Segment("Run", 2.0, 3.0, score=0.25),)
    with pytest.raises(AnnotationError, match="label 'Run' is not one of the 1 classes"):
        read_activitynet_results(path, classes=["Walk"])


def _table_rows(table) -> list[tuple]:
    return sorted(
        (table.videos[v], table.classes[k], *segment, score)
        for v, k, segment, score in zip(
            table.video, table.label, table.segments.tolist(), table.scores, strict=True
        )
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"label": "Run", "score": "0.5", "segment": ["1", 2]}, None),  # numbers as strings
        ({"label": 3, "score": 0.5, "segment": [1, 2]}, "is not {'segment'"),
        ({"label": "Swim", "score": 0.5, "segment": [1, 2]}, "'Swim' is not one of the 2"),
        ({"label": "Run", "score": None, "segment": [1, 2]}, "score is None, not a number"),
        ({"label": "Run", "score": 0.5, "segment": [3, 2]}, "ends at 2 s, before its start"),
        ({"label": "Run", "score": 0.5, "segment": [1, 2, 3]}, "is not {'segment'"),
        ({"label": "Run", "segment": [1, 2]}, "score is None"),
    ],
)  # fmt: skip
def test_results_table_reads_and_refuses_as_the_records_do(
    tmp_path: Path, entry: dict, message: str | None
) -> None:
    """The columnar reader (what `evaluate segments` reads half a million predictions with)
    keeps the record reader's semantics: the same rows, the same error naming the entry."""
    from datamodules.annotations import read_results_table

    results = {
        "v1": [{"label": "Walk", "score": 0.9, "segment": [0.0, 4.5]}, entry],
        "v2": [{"label": "Run", "score": 0.1, "segment": [2, 3]}],
        "v3": [],
    }
    path = write_json(tmp_path / "results.json", {"results": results})
    classes = ["Walk", "Run"]
    if message is None:
        table = read_results_table(path, classes)
        records = read_activitynet_results(path, classes=classes).records
        expected = sorted(
            (video, s.label, s.start, s.end, s.score)
            for video, record in records.items()
            for s in record.segments
        )
        assert _table_rows(table) == expected and table.videos == ("v1", "v2", "v3")
        return
    with pytest.raises(AnnotationError, match=re.escape(message)) as raised:
        read_results_table(path, classes)
    assert "video 'v1'" in str(raised.value)


# --- MultiTHUMOS and TSU ----------------------------------------------------------------------


def test_multithumos_counts_classes_from_one(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "multithumos.json",
        {"video_test_1": {"subset": "testing", "duration": 30.5, "actions": [[65, 1.5, 2.0]]}},
    )
    names = write(tmp_path / "class_list.txt", "".join(f"{n} Class{n}\n" for n in range(1, 66)))
    named = read_multithumos(path, class_list=names)
    assert named.records["video_test_1"].segments == (Segment("Class65", 1.5, 2.0),)
    assert read_multithumos(path).records["video_test_1"].segments[0].label == "65"
    zero = write_json(
        tmp_path / "zero.json",
        {"v": {"subset": "testing", "duration": 3.0, "actions": [[0, 1.0, 2.0]]}},
    )
    with pytest.raises(AnnotationError, match=r"video 'v': class 0 is not one of the 65 classes"):
        read_multithumos(zero)


def test_multithumos_class_list_must_start_at_one(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", {})
    names = write(tmp_path / "class_list.txt", "0 BaseballPitch\n1 BasketballDunk\n")
    with pytest.raises(AnnotationError, match=r"class_list\.txt:1: class number '0' where 1"):
        read_multithumos(path, class_list=names)


def test_tsu_frames_to_seconds_at_the_given_fps(tmp_path: Path) -> None:
    write(tmp_path / "Action_list", "0\tEnter\n1\tWalk\n2\tMake_coffee\n")
    path = write_json(
        tmp_path / "smarthome_CS_51.json",
        {
            "P02T01C06": {
                "subset": "training",
                "duration": 600,
                "actions": [[1, 30, 90], [0, 0, 30]],
            }
        },
    )
    tsu = read_tsu(path, fps=30.0)
    record = tsu.records["P02T01C06"]
    assert tsu.classes == ("Enter", "Walk", "Make_coffee")
    assert (record.duration, record.fps) == (20.0, 30.0)
    assert record.segments == (Segment("Enter", 0.0, 1.0), Segment("Walk", 1.0, 3.0))
    assert read_tsu(path).records["P02T01C06"].duration == 30.0  # 20 fps by default


def test_tsu_needs_its_action_list(tmp_path: Path) -> None:
    path = write_json(tmp_path / "smarthome_CV_51.json", {})
    with pytest.raises(FileNotFoundError, match=r"Action_list.*Fix: .*action_list="):
        read_tsu(path)


# --- THUMOS14 original txt --------------------------------------------------------------------


def thumos_txt(root: Path) -> Path:
    write(root / "annotations_val/Diving_val.txt", "video_validation_1  11.3 14.1\n")
    write(root / "annotations_val/Shotput_val.txt", "video_validation_1  2.0 3.5\n\n")
    write(root / "annotations_val/Ambiguous_val.txt", "video_validation_1  14.1 15.0\n")
    write(root / "annotations_test/Diving_test.txt", "video_test_1  1.0 2.0\n")
    write(root / "annotations_test/Shotput_test.txt", "video_test_1  0.5 0.9\n")
    write(root / "annotations_test/readme.txt", "THUMOS CHALLENGE 2014\n")
    return root


def test_thumos14_txt_keeps_ambiguous_apart(tmp_path: Path) -> None:
    thumos = read_thumos14_txt(thumos_txt(tmp_path))
    assert thumos.classes == ("Diving", "Shotput")
    val = thumos.records["video_validation_1"]
    assert (val.subset, val.duration) == ("Validation", None)
    assert val.segments == (Segment("Shotput", 2.0, 3.5), Segment("Diving", 11.3, 14.1))
    assert val.ambiguous == (Segment("Ambiguous", 14.1, 15.0),)
    assert thumos.records["video_test_1"].subset == "Test"


def test_thumos14_txt_errors(tmp_path: Path) -> None:
    root = thumos_txt(tmp_path)
    (root / "annotations_test/Shotput_test.txt").unlink()
    with pytest.raises(AnnotationError, match=r"only some have \['Shotput'\]"):
        read_thumos14_txt(root)
    write(root / "annotations_test/Shotput_test.txt", "video_test_1  0.5\n")
    with pytest.raises(AnnotationError, match=r"Shotput_test\.txt:1: expected `video start end`"):
        read_thumos14_txt(root)
    with pytest.raises(FileNotFoundError, match="no THUMOS14 annotation folder"):
        read_thumos14_txt(tmp_path / "elsewhere")


# --- EPIC-KITCHENS-100 ------------------------------------------------------------------------

EPIC_HEADER = (
    "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
    "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
)


def epic_files(folder: Path, rows: str) -> Path:
    write(
        folder / "EPIC_100_verb_classes.csv",
        "id,key,instances,category\n0,take,\"['take', 'grab']\",retrieve\n1,put,\"[]\",leave\n",
    )
    write(
        folder / "EPIC_100_noun_classes.csv",
        'id,key,instances,category\n0,tap,"[\'tap\']",appliances\n1,board:chopping,"[]",utensils\n',
    )
    write(
        folder / "EPIC_100_video_info.csv",
        "video_id,duration,fps,resolution\nP01_11,100.5,50.0,1x1\n",
    )
    return write(folder / "EPIC_100_train.csv", EPIC_HEADER + rows)


def test_epic_kitchens_verb_noun_segments(tmp_path: Path) -> None:
    path = epic_files(
        tmp_path,
        "P01_11_0,P01,P01_11,00:00:00.560,00:00:00.00,00:00:01.89,1,95,grab tap,grab,0,tap,0,"
        "['tap'],[0]\n"
        "P01_11_1,P01,P01_11,00:01:01.700,00:01:01.56,00:01:02.45,3078,3123,"
        '"put down board, carefully",put-down,1,board,1,"[\'board\']",[1]\n',
    )
    epic = read_epic_kitchens(path)
    assert (epic.verb_classes, epic.noun_classes) == (("take", "put"), ("tap", "board:chopping"))
    assert epic.classes == ("put board:chopping", "take tap")
    record = epic.records["P01_11"]
    assert (record.subset, record.duration, record.fps) == ("train", 100.5, 50.0)
    assert record.segments == (
        Segment("take tap", 0.0, 1.89, verb="take", noun="tap"),
        Segment("put board:chopping", 61.56, 62.45, verb="put", noun="board:chopping"),
    )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("P01_11,00:00:01.00,00:00:02.00,7,0", "class '7' is not one of the 2 classes"),
        ("P01_11,00:00:01.00,0:0:2,0,0", "timestamp '0:0:2' is not HH:MM:SS.ff"),
        ("P01_11,00:00:03.00,00:00:02.00,0,0", "ends at 2 s, before its start at 3 s"),
        ("P09_99,00:00:01.00,00:00:02.00,0,0", "the video is not in the video_info CSV"),
    ],
)
def test_epic_kitchens_bad_rows(tmp_path: Path, row: str, problem: str) -> None:
    vid, start, stop, verb, noun = row.split(",")
    path = epic_files(
        tmp_path, f"{vid}_0,P01,{vid},{start},{start},{stop},1,2,x,x,{verb},x,{noun},[],[]\n"
    )
    with pytest.raises(AnnotationError, match=re.escape(problem)) as error:
        read_epic_kitchens(path)
    assert f"video '{vid}'" in str(error.value) and "Fix:" in str(error.value)


def test_epic_kitchens_missing_side_file(tmp_path: Path) -> None:
    path = epic_files(tmp_path, "")
    (tmp_path / "EPIC_100_video_info.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"EPIC_100_video_info\.csv not found: .*Fix: put"):
        read_epic_kitchens(path)


# --- the model and the dispatcher -------------------------------------------------------------


def test_unknown_subset_and_format(tmp_path: Path) -> None:
    charades = read_charades(charades_files(tmp_path))
    with pytest.raises(ValueError, match=r"no subset 'training'.*it has \['train'\]"):
        charades.subset("training")
    with pytest.raises(ValueError, match="unknown annotation format 'kinetics'"):
        read_annotations(tmp_path, "kinetics")


def test_reader_file_options_are_taken_under_root_as_the_annotations_are(tmp_path: Path) -> None:
    """`annotation_options: {classes_file: meta/classes.txt}` names a file under the dataset root,
    as `annotations:` does (it was taken relative to the working directory); absolute paths stay."""
    root = tmp_path / "charades"
    write(root / "meta" / "classes.txt", "c000 walk_left\nc001 wave\n")
    csv_path = write(
        root / "annotations" / "Charades_v1_train.csv",
        CHARADES_HEADER + "vid_0001,synthetic,s,7,7,Yes,x,,x,c001 0.50 1.25,3.00\n",
    )
    read = read_annotations(csv_path, "charades", root, classes_file="meta/classes.txt")
    assert read.classes == ("walk_left", "wave")
    absolute = read_annotations(
        csv_path, "charades", tmp_path / "elsewhere", classes_file=root / "meta" / "classes.txt"
    )
    assert absolute.classes == ("walk_left", "wave")
