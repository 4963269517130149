"""The frame store: each video decoded once, whole, into a uint8 array that later reads map.

A `VideoSource` or `FlowSource` with `frame_store:` set reads its frames from the store instead
of the video: `(N, S, S, C)` uint8, every frame of the file already cut to the centred square
and resized to the source's `size` (C = 3 for RGB; C = 2 for flow, the x and y planes of the
quantised flow video). That is exactly what the source makes of the decoded frames before its
float conversion, so a read from the store equals a read through the decoder. A read maps the
file (`np.load(mmap_mode="r")`) and copies the few rows it needs; the operating system's page
cache keeps hot videos in memory, once for every DataLoader worker and run.

Layout of a store folder:

    <store>/v1/<d[:2]>/<d>-<planes>-<size>px-<backend>.npy    the frames (uint8)
    <store>/v1/<d[:2]>/<d>-<planes>-<size>px-<backend>.json   written last: the entry is complete
    <store>/digests/<hash of the video's path>.json           path, size, mtime_ns -> digest

`<d>` is the BLAKE2b digest of the video file's bytes, so an edited or replaced video never reads
a stale entry; `<planes>` (`rgb` or `xy`), `<size>` and `<backend>` are the settings that change
the frames (the two decoders may convert colours slightly differently). `v1` is the format: a
change to how frames are cut or resized takes a new one. Entries depend on nothing but the
video's bytes and these settings, so one store can serve several datasets and runs.

The digest of a video is kept in a small record keyed by its resolved path, valid while the
file's size and modification time (`st_mtime_ns`) are those recorded: hashing a large video on
every open would cost a read of the whole file. An edit that keeps both the size and the time
(a copy that restores the timestamp over a file of the same length) is not noticed, as `make` and
`rsync` would not notice it; delete `<store>/digests/` to make the store hash every video again.

Writes: an entry is built by the first read of its video (in whichever process or DataLoader
worker reads it) or by `crossdistill frame-store`. The frames are written to a temporary file in
the entry's folder (`.<name>.<host>.<pid>-<thread>.part`), fsynced and renamed into place, then
the `.json` record the same way, so a complete name is never half written. Writers of one entry
write the same bytes: when two race, the later rename replaces an identical file, and a writer
that finds the entry complete before its rename drops its own copy and reads the other's. A
temporary file left by a killed writer is deleted by the next build of that entry (or by the
command): at once when its process is gone from this machine, after a day when it was written
on another one.

Damage: on open, the record must parse and name the expected shape, the file's size must be the
one recorded, and the `.npy` header must agree with both; an entry that fails (truncated, altered,
its record missing) is rebuilt, or, where the store cannot be written, is an error naming the
file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from datamodules.sources.base import DataError, load_array, square_resize
from datamodules.sources.decoders import Backend, FrameReader, PyAVReader, open_reader
from datamodules.sources.integrity import commit, file_digest, write_atomic, write_pending

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the layout and of the frames' preparation; part of every entry's path."""
PLANES = {3: "rgb", 2: "xy"}
"""The planes kept, by channel count: all of RGB, the x and y planes of quantised flow."""
CHUNK = 64
"""Frames decoded at a time while building (the whole video is never held in memory)."""
FOREIGN_PART_AGE_S = 24 * 3600
"""Age after which another machine's temporary file counts as left by a killed writer."""


class FrameStoreError(DataError):
    """A store that cannot give a video's frames; the message names the file and the fix."""


def to_planes(frames: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Decoded RGB frames `(n, H, W, 3)` as a source keeps them: the planes it reads (all three,
    or the first two of quantised flow) of the centred square, resized to `size`."""
    if channels != frames.shape[-1]:
        frames = np.ascontiguousarray(frames[..., :channels])
    return square_resize(frames, size)


class StoredFrames:
    """A `FrameReader` over one store entry: the frames already on the square."""

    def __init__(self, array: np.ndarray, fps: float, side: int) -> None:
        self.array, self.fps, self.side = array, fps, side
        self.frame_count = len(array)

    def frames(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.array[indices])


class FrameStore:
    """The entries of one source's settings in a store folder.

    Args:
        folder: the store folder.
        backend: the decoder the source reads videos with.
        size: side of the source's square frames.
        channels: 3 (RGB) or 2 (the x and y planes of quantised flow).
        option: the config key that sets the folder, for the fixes in error messages.
    """

    def __init__(
        self, folder: Path, backend: Backend, size: int, channels: int, option: str
    ) -> None:
        self.folder, self.backend, self.size = Path(folder), backend, size
        self.channels, self.option = channels, option

    def __repr__(self) -> str:
        return f"FrameStore({str(self.folder)!r}, {self.backend}, {self.size}px, {self.planes})"

    @property
    def planes(self) -> str:
        return PLANES[self.channels]

    def entry(self, digest: str) -> Path:
        """The frames file of the video with this digest."""
        name = f"{digest}-{self.planes}-{self.size}px-{self.backend}.npy"
        return self.folder / f"v{FORMAT}" / digest[:2] / name

    # ------------------------------------------------------------------ digests
    def digest(self, video: Path) -> str:
        """The BLAKE2b digest of the video's bytes, from its record while the file's size and
        modification time are unchanged, else computed (and recorded where the store can be
        written)."""
        path = str(Path(video).resolve())
        stat = os.stat(path)
        key = {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        name = hashlib.blake2b(path.encode(), digest_size=16).hexdigest()
        record = self.folder / "digests" / f"{name}.json"
        try:
            known = json.loads(record.read_text())
            if {k: known.get(k) for k in key} == key and isinstance(known.get("blake2b"), str):
                return known["blake2b"]
        except (OSError, ValueError):
            pass
        digest = file_digest(Path(path))
        try:
            text = json.dumps({**key, "blake2b": digest}).encode()
            write_atomic(record, lambda handle: handle.write(text), _part_name(record))
        except OSError:
            pass  # a store that cannot be written hashes the video on every open
        return digest

    # ------------------------------------------------------------------ reading
    def open(self, video: Path) -> StoredFrames:
        """The stored frames of `video`, built first when missing or damaged."""
        stored, _ = self.ensure(video)
        return stored

    def ensure(self, video: Path) -> tuple[StoredFrames, str]:
        """The stored frames of `video` and what was done: `kept` (complete already),
        `built`, or `rebuilt (...)` with what was wrong with the old entry."""
        entry = self.entry(self.digest(video))
        stored, problem = self.read(entry)
        if stored is not None:
            return stored, "kept"
        if problem is not None:
            if not self.writable():
                raise FrameStoreError(
                    f"{entry}: the stored frames of {video} {problem}, and the frame store "
                    f"{self.folder} cannot be written to rebuild them. Fix: {self.fix()}"
                )
            log.warning("%s %s; rebuilding it from %s", entry, problem, video)
        self.build(video, entry, rebuild=problem is not None)
        stored, again = self.read(entry)
        if stored is None:
            raise FrameStoreError(
                f"{entry}: {again} right after it was written (a full disk, or another program "
                f"writing there?). Fix: free space or delete the file; {self.fix()}"
            )
        return stored, "built" if problem is None else f"rebuilt ({problem})"

    def read(self, entry: Path) -> tuple[StoredFrames | None, str | None]:
        """An entry's frames, or None and what is wrong (None when there is no entry)."""
        record = entry.with_suffix(".json")
        if not record.is_file():
            if entry.exists():
                return None, "has no completion record (its writer stopped before the end)"
            return None, None
        try:
            meta = json.loads(record.read_text())
            shape = tuple(int(n) for n in meta["shape"])
            expected_bytes, fps, side = int(meta["bytes"]), float(meta["fps"]), int(meta["side"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, f"has an unreadable record ({record.name})"
        if shape[1:] != (self.size, self.size, self.channels):
            return None, f"is recorded with shape {shape}, not (N, {self.size}, {self.size}, ...)"
        try:
            size = entry.stat().st_size
        except OSError:
            return None, "is missing (its record is there)"
        if size != expected_bytes:
            return None, f"has {size} bytes, but {expected_bytes} were written (truncated?)"
        try:
            array = load_array(entry)
        except (OSError, ValueError) as err:
            return None, f"cannot be read as an array ({err})"
        if array.shape != shape or array.dtype != np.uint8:
            return None, f"holds {array.dtype} {array.shape}, but uint8 {shape} was recorded"
        return StoredFrames(array, fps, side), None

    def unusable(self, video: Path) -> str | None:
        """Why `video` cannot be read through the store (None when it can): only a store that
        cannot be written and lacks a complete entry. Cheap when the store is writable (no
        digest is computed)."""
        if self.writable():
            return None
        stored, problem = self.read(self.entry(self.digest(video)))
        if stored is not None:
            return None
        held = "holds no frames of it" if problem is None else f"holds damaged frames ({problem})"
        return f"the frame store {self.folder} cannot be written and {held}"

    def writable(self) -> bool:
        """Whether entries can be written: the folder, or the nearest folder above it that
        exists, accepts new files."""
        existing = self.folder
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)

    def sweep(self) -> list[Path]:
        """Delete the temporary files of killed writers anywhere in the store."""
        folders = [self.folder / "digests", *sorted(self.folder.glob(f"v{FORMAT}/*"))]
        return [part for folder in folders if folder.is_dir() for part in remove_leftovers(folder)]

    def fix(self) -> str:
        """What to do about a store that cannot be written."""
        return (
            f"make {self.folder} writable, or set {self.option} to a writable folder (`true`: "
            "beside the data root), or fill the store where it can be written with "
            "`crossdistill frame-store --config DATA.yaml`"
        )

    # ------------------------------------------------------------------ writing
    def build(self, video: Path, entry: Path, rebuild: bool = False) -> None:
        """Decode `video` whole into `entry` (see the module's notes on atomic writes);
        `rebuild` invalidates the damaged entry there first."""
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FrameStoreError(
                f"{self.folder}: cannot create the frame store's folder {entry.parent} ({err}). "
                f"Fix: {self.fix()}"
            ) from None
        remove_leftovers(entry.parent)
        if rebuild:
            entry.with_suffix(".json").unlink(missing_ok=True)  # invalid from here
        try:
            reader = open_reader(video, self.backend)
        except ValueError as err:
            raise FrameStoreError(
                f"{video}: cannot be decoded for the frame store ({err}). Fix: re-encode or "
                "replace the video (`crossdistill data-check --deep` finds damaged files)"
            ) from None
        shape = (reader.frame_count, self.size, self.size, self.channels)
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        written, side = 0, self.size

        def write(handle: IO[bytes]) -> None:
            nonlocal written, side
            np.lib.format.write_array_header_1_0(handle, header)
            try:
                for decoded in in_order(reader):
                    side = min(decoded.shape[1:3])
                    handle.write(to_planes(decoded, self.size, self.channels).tobytes())
                    written += len(decoded)
            except OSError:
                raise  # the store's disk, not the video
            except Exception as err:
                raise FrameStoreError(
                    f"{video}: cannot be decoded whole for the frame store (after frame "
                    f"{written}: {err}). Fix: re-encode or replace the video (`crossdistill "
                    "data-check --deep` finds damaged files)"
                ) from None
            if written != reader.frame_count:
                raise FrameStoreError(
                    f"{video}: decoded {written} of the {reader.frame_count} frames its header "
                    "announces. Fix: re-encode the video"
                )

        try:
            pending = write_pending(entry, write, _part_name(entry))
        except OSError as err:
            raise FrameStoreError(
                f"{entry}: cannot write the frame store ({err}). Fix: {self.fix()}"
            ) from None
        if self.read(entry)[0] is not None:  # another writer finished first: read its copy
            pending.unlink(missing_ok=True)
            return
        meta = {
            "shape": list(shape),
            "bytes": pending.stat().st_size,
            "fps": reader.fps,
            "side": int(side),
            "video": str(Path(video).resolve()),
            "backend": self.backend,
            "format": FORMAT,
        }
        text = json.dumps(meta, indent=1).encode()
        try:
            commit(pending, entry)
            record = entry.with_suffix(".json")
            write_atomic(record, lambda handle: handle.write(text), _part_name(record))
        except OSError as err:
            raise FrameStoreError(
                f"{entry}: cannot write the frame store ({err}). Fix: {self.fix()}"
            ) from None


def in_order(reader: FrameReader, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Every frame of a reader, first to last, `chunk` at a time, as its `frames` gives them.

    PyAV decodes in one pass from the start (seeking for every chunk would decode from the key
    frame before it again) while each frame's timestamp gives its position; from the first frame
    whose does not (a variable frame rate), the rest is read by seeking, as `frames` does."""
    position = 0
    if isinstance(reader, PyAVReader):
        batch: list[np.ndarray] = []
        for index, rgb in reader.numbered():
            if position == reader.frame_count or index != position:
                break
            batch.append(rgb)
            position += 1
            if len(batch) == chunk:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
    for start in range(position, reader.frame_count, chunk):
        yield reader.frames(np.arange(start, min(start + chunk, reader.frame_count)))


# ---------------------------------------------------------------------- temporary files
_PART = ".part"


def _part_name(target: Path) -> Path:
    """A temporary name beside `target`, owned by this process and thread."""
    owner = f"{socket.gethostname()}.{os.getpid()}-{threading.get_ident()}"
    return target.parent / f".{target.name}.{owner}{_PART}"


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files in `folder` whose writer was killed: its process is gone from
    this machine, or it was written on another machine over a day ago. Returns those deleted."""
    removed = []
    for part in folder.glob(f".*{_PART}"):
        if _stale(part):
            try:
                part.unlink()
            except OSError:
                continue  # removed by another process meanwhile
            removed.append(part)
    return removed


def _stale(part: Path) -> bool:
    """Whether the writer of a temporary file (`.<target>.<host>.<pid>-<thread>.part`, the
    target's name ending in `.npy` or `.json`) is gone."""
    body = part.name[1 : -len(_PART)]
    owner = next((body.split(s, 1)[1] for s in (".npy.", ".json.") if s in body), "")
    host, _, process = owner.rpartition(".")
    pid = process.partition("-")[0]
    if host == socket.gethostname() and pid.isdigit():
        return not _alive(int(pid))
    try:
        return time.time() - part.stat().st_mtime > FOREIGN_PART_AGE_S
    except OSError:
        return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def store_folder(option: bool | str, root: Path) -> Path | None:
    """The folder a `frame_store` option names: `true` is `<root>.frame_store` beside the data
    root (the root itself may be shared or read-only); a string is a folder, relative to the
    working directory as `root` is; `false` is no store."""
    if option is False or option is None:
        return None
    if option is True:
        resolved = Path(root).resolve()
        return resolved.parent / f"{resolved.name}.frame_store"
    return Path(option).resolve()
