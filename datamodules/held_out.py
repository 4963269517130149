"""The held-out part of the training videos (Radevski et al.'s held-out teacher weights).

The authors fit the multimodal teacher's weights on a part of the training set that no teacher
trained on. The part is chosen by a hash of each video id, ranked, so it depends only on the
annotated ids and the fraction: every run with the same annotations, training subset and
fraction (each teacher, then the student) holds out the same videos, whatever the seed, the
record order or the modalities it loads. Its digest lets a student check that its teachers
were trained without those videos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from datamodules.annotations import VideoRecord
from datamodules.sources.base import DataError


def _rank_key(video_id: str) -> str:
    return hashlib.sha1(video_id.encode()).hexdigest()


def split_held_out(
    records: Sequence[VideoRecord], fraction: float
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(training part, held-out part): `round(fraction * n)` videos held out, at least one,
    the ones whose id hashes lowest; both parts keep the records' order."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"held_out_fraction must be in (0, 1), got {fraction}")
    count = max(1, round(fraction * len(records)))
    if count >= len(records):
        raise DataError(
            f"held_out_fraction {fraction} of {len(records)} training videos leaves none to "
            "train on. Fix: lower held_out_fraction, or use a larger training subset"
        )
    held = set(sorted((r.video_id for r in records), key=_rank_key)[:count])
    return [r for r in records if r.video_id not in held], [
        r for r in records if r.video_id in held
    ]


def held_out_digest(records: Sequence[VideoRecord]) -> str:
    """A fingerprint of a held-out part: sha1 of its sorted video ids."""
    return hashlib.sha1("\n".join(sorted(r.video_id for r in records)).encode()).hexdigest()
