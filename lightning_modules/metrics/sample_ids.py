"""Sample ids as stable int64 keys, and the canonical order of samples, in numpy.

Every metric orders samples by key (`streaming.SampleMetric` after gathering them across DDP
ranks, `crossdistill evaluate` on files), so both score rows in the same order. Integer ids are
used as they are; strings hash to 64 bits (BLAKE2b), the same on every rank and in every run: a
collision among 10^6 ids has a probability of about 10^-7.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def sample_key_array(ids: Iterable[str | int]) -> np.ndarray:
    """The int64 key of each id."""
    keys = []
    for sample_id in ids:
        if isinstance(sample_id, str):
            digest = hashlib.blake2b(sample_id.encode(), digest_size=8).digest()
            keys.append(int.from_bytes(digest, "little", signed=True))
        elif isinstance(sample_id, (int, np.integer)):
            keys.append(int(sample_id))
        else:
            raise TypeError(f"sample id {sample_id!r} is neither a string nor an integer")
    return np.asarray(keys, dtype=np.int64)


def sample_order(ids: Iterable[str | int]) -> np.ndarray:
    """Position of each id in the canonical sample order (ascending key, stable)."""
    keys = sample_key_array(ids)
    position = np.empty(len(keys), dtype=np.int64)
    position[np.argsort(keys, kind="stable")] = np.arange(len(keys))
    return position
