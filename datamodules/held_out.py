"""Parts of the training videos set aside by a hash of their ids: the held-out part
(Radevski et al.'s held-out teacher weights) and the validation part (`val_fraction`).

The authors fit the multimodal teacher's weights on a part of the training set that no teacher
trained on. The part is chosen by a hash of each video id, ranked, so it depends only on the
annotated ids and the fraction: every run with the same annotations, training subset and
fraction (each teacher, then the student) holds out the same videos, whatever the seed, the
record order or the modalities it loads. Its digest lets a student check that its teachers
were trained without those videos.

Real benchmarks often have no labelled split besides the one people report (THUMOS14 `Test`,
ActivityNet `validation`, Charades `test`); choosing a checkpoint there is a max over epochs on
the test set. A validation part drawn the same way, with its own salt (so it is not the
held-out part), gives checkpoint selection videos of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from datamodules.annotations import VideoRecord
from datamodules.sources.base import DataError


def _rank_key(video_id: str, salt: str = "") -> str:
    return hashlib.sha1((salt + video_id).encode()).hexdigest()


def split_held_out(
    records: Sequence[VideoRecord], fraction: float, option: str = "held_out_fraction"
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(training part, set-aside part): `round(fraction * n)` videos set aside, at least one,
    the ones whose id hashes lowest; both parts keep the records' order. `option` names the
    setting (and salts the hash): `held_out_fraction` or `val_fraction`."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"{option} must be in (0, 1), got {fraction}")
    count = max(1, round(fraction * len(records)))
    if count >= len(records):
        raise DataError(
            f"{option} {fraction} of {len(records)} training videos leaves none to "
            f"train on. Fix: lower {option}, or use a larger training subset"
        )
    salt = "" if option == "held_out_fraction" else option
    held = set(sorted((r.video_id for r in records), key=lambda v: _rank_key(v, salt))[:count])
    return [r for r in records if r.video_id not in held], [
        r for r in records if r.video_id in held
    ]


def held_out_digest(records: Sequence[VideoRecord]) -> str:
    """A fingerprint of a held-out part: sha1 of its sorted video ids."""
    return hashlib.sha1("\n".join(sorted(r.video_id for r in records)).encode()).hexdigest()
