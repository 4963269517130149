"""Integrity of derived files (extracted features, the teacher cache): atomic writes and digests.

A derived file is written to a temporary name in its folder and moved into place with
`os.replace`, so a reader sees the old file or the new one, never half of one; the folder's
record (`meta.json`, `manifest.json`) is written the same way and last, listing each file's
size and BLAKE2b digest. A crash mid-way leaves no record (writers delete the old one first),
and a file truncated or altered afterwards no longer matches its entry.

What the readers check, and why it stays cheap: the size on every check (one `stat`), and the
digest where the check reads the whole file anyway (`FeatureSource` scans every value for NaN;
the teacher cache is read in full each epoch): BLAKE2b runs at several hundred MB/s on one
core, so it adds one pass over bytes that are then in the page cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

DIGEST = "blake2b"
_UMASK = os.umask(0)
os.umask(_UMASK)


def file_digest(path: Path) -> str:
    """BLAKE2b (32-byte) hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(
    path: Path, write: Callable[[IO[bytes]], None], pending: Path | None = None
) -> None:
    """Write `path` through a fsynced temporary file in its folder, then `os.replace` it into
    place and fsync the folder (so that the new name survives a crash right after)."""
    commit(write_pending(path, write, pending), path)


def write_pending(
    path: Path, write: Callable[[IO[bytes]], None], pending: Path | None = None
) -> Path:
    """The first half of `write_atomic`: a complete, fsynced temporary file beside `path`
    (`commit` puts it in place), for two files that must change together. The temporary file
    is `pending` when given (a name its writer can be told by), else a random name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if pending is None:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    else:
        handle = open(pending, "wb")
    try:
        os.chmod(handle.name, 0o666 & ~_UMASK)  # as a plain open() would (not tempfile's 0600)
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return Path(handle.name)


def commit(pending: Path, path: Path) -> None:
    """Rename a `write_pending` file over `path` and make the rename durable."""
    try:
        os.replace(pending, path)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is done either way
    finally:
        os.close(descriptor)


def save_npy_atomic(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Save an array as npy atomically; returns its entry `{"bytes", "blake2b"}`."""
    write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))
    return {"bytes": path.stat().st_size, DIGEST: file_digest(path)}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=1).encode()
    write_atomic(path, lambda handle: handle.write(text))


def entry_problem(path: Path, entry: dict[str, Any], verify_digest: bool = True) -> str | None:
    """What is wrong with a file against its recorded entry (`None` when it matches): a missing
    file, another size (truncated or grown), or another digest (altered)."""
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"has {size} bytes, but {entry['bytes']} were written (truncated or altered)"
    if verify_digest and file_digest(path) != entry[DIGEST]:
        return f"has the right size but not the {DIGEST} digest that was written (altered)"
    return None
