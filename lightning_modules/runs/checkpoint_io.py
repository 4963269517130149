"""`RunCheckpointIO`: checkpoints written so that no fault loses the previous good one.

Lightning's own writer serialises into memory, writes a temporary file in the system's temp
folder and moves it over the target. When the run folder is on another filesystem (NFS, Lustre:
every cluster) that move is a copy: a kill during it leaves a truncated `last.ckpt` (the good
one is already gone), a full disk leaves a cut file under the final name, and every kill leaves
a checkpoint-sized orphan in `/tmp`. Here the temporary file lives beside the target, is
fsynced, then renamed over it (atomic on one filesystem), and the folder is fsynced: a reader
finds the old checkpoint or the new one, never part of one. Orphans of killed writes are
removed by the next write of the same checkpoint.

Loading names a damaged checkpoint (empty, cut off, not a checkpoint) with the fix, instead of
torch's bare `EOFError` or zip error.
"""

from __future__ import annotations

import errno
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from datamodules.sources.integrity import commit, write_pending
from lightning_modules.runs.directory import RunDirError


class DiskFullError(OSError):
    """No space (or quota) left where a checkpoint or export is written; nothing was replaced."""


class DamagedCheckpointError(RunDirError):
    """A checkpoint file that cannot be a complete checkpoint; the message names it and the fix."""


class RunCheckpointIO(TorchCheckpointIO):
    """Torch checkpoints written through a temporary file in the target's own folder."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):  # remote: Lightning's own writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_atomic(checkpoint, Path(path))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, **kwargs: Any) -> Any:
        if "://" not in str(path):
            check_checkpoint_file(Path(path))
        return super().load_checkpoint(path, map_location=map_location, **kwargs)


def save_atomic(payload: Any, path: Path) -> None:
    """`torch.save` to `path` through a fsynced temporary file beside it, then rename."""
    commit(save_pending(payload, path), path)


def save_pending(payload: Any, path: Path) -> Path:
    """`torch.save` into a complete temporary file beside `path` (`commit` puts it in place);
    a full disk is named as such, and the file at `path` stays as it was."""
    # left by a write that was killed: `write_pending`'s names (tempfile's 8 random characters),
    # nothing else of the folder's
    for orphan in path.parent.glob(f".{path.name}.{'[a-z0-9_]' * 8}"):
        orphan.unlink(missing_ok=True)
    try:
        return write_pending(path, lambda handle: torch.save(payload, handle))
    except (OSError, RuntimeError) as err:
        # torch reports a full disk from its zip writer as a RuntimeError ("[enforce fail ...")
        full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
        if not full and not _disk_full(path.parent):
            raise
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left on the device of {path.parent} while writing {path.name}; the "
            f"previous {path.name} (if any) is kept unchanged. Fix: free disk space or quota "
            "there, then resume with `--ckpt_path last`",
        ) from err


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def check_checkpoint_file(path: Path) -> None:
    """Raise `DamagedCheckpointError` for a file that cannot be a whole torch checkpoint."""
    if not path.is_file():
        return  # Lightning's own error names a missing file
    size = path.stat().st_size
    if size == 0 or not zipfile.is_zipfile(path):
        raise DamagedCheckpointError(
            f"{path} is damaged ({size} bytes, not a complete checkpoint: cut off while being "
            "written, or not a checkpoint at all). Fix: resume from another checkpoint of the "
            "run (`--ckpt_path best`, or a file you name), or move it away and start the run "
            "again; checkpoints written by this version are never left half-written"
        )
