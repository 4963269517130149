"""The held-out part of the training videos: the same videos for every run with the same
annotations and fraction, never trained on, served whole by `held_out_dataloader`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from datamodules.annotations import VideoRecord
from datamodules.held_out import held_out_digest, split_held_out
from datamodules.sources import DataError, KeypointSource
from tests.test_datamodule import make


def records(count: int) -> list[VideoRecord]:
    return [VideoRecord(f"video_{i:03d}", "training", 10.0, ()) for i in range(count)]


def test_split_holds_out_the_rounded_fraction_whatever_the_record_order() -> None:
    videos = records(50)
    rest, held = split_held_out(videos, 0.2)
    assert len(held) == 10 and len(rest) == 40
    assert {r.video_id for r in rest}.isdisjoint(r.video_id for r in held)
    assert [r.video_id for r in rest] == [r.video_id for r in videos if r not in held]  # order
    shuffled = videos[:]
    random.Random(0).shuffle(shuffled)
    again = split_held_out(shuffled, 0.2)[1]
    assert {r.video_id for r in again} == {r.video_id for r in held}
    assert held_out_digest(again) == held_out_digest(held)
    # not simply the first or last ids: the hash decides
    ids = sorted(r.video_id for r in held)
    assert ids != [r.video_id for r in videos[:10]] and ids != [r.video_id for r in videos[-10:]]
    # another fraction holds out another set, with another digest
    assert held_out_digest(split_held_out(videos, 0.3)[1]) != held_out_digest(held)


def test_split_refuses_fractions_that_leave_nothing_to_train_on() -> None:
    assert len(split_held_out(records(3), 0.01)[1]) == 1  # at least one video held out
    with pytest.raises(DataError, match="leaves none to train on"):
        split_held_out(records(2), 0.9)
    with pytest.raises(DataError, match=r"in \(0, 1\)"):
        split_held_out(records(5), 0.0)


def test_datamodule_trains_without_the_held_out_videos_and_serves_them(bench: Path) -> None:
    whole = make(bench, modalities={"pose": KeypointSource()})
    whole.setup("fit")
    training = {r.video_id for r in whole.datasets["train"].sampler.records}
    with pytest.raises(DataError, match="held_out_fraction"):
        whole.held_out_dataloader()
    assert whole.held_out_digest is None

    part = make(bench, modalities={"pose": KeypointSource()}, held_out_fraction=0.25)
    part.setup("fit")
    trained = {r.video_id for r in part.datasets["train"].sampler.records}
    served = {v for batch in part.held_out_dataloader() for v in batch["meta"]["video_id"]}
    assert served and trained and served.isdisjoint(trained)
    assert served | trained == training
    assert part.reports["held_out"].name == "training (held out)"
    # validation is untouched, and the digest names exactly the served videos
    validation = {r.video_id for r in whole.datasets["val"].sampler.records}
    assert {r.video_id for r in part.datasets["val"].sampler.records} == validation
    assert part.held_out_digest == held_out_digest(
        [r for r in whole.datasets["train"].sampler.records if r.video_id in served]
    )


def test_datamodule_rejects_a_fraction_out_of_range(bench: Path) -> None:
    with pytest.raises(DataError, match=r"held_out_fraction must be in \[0, 1\)"):
        make(bench, held_out_fraction=1.0)
