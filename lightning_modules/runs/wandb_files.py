"""Read an offline W&B run back from its `run-<id>.wandb` file.

wandb 0.31 has no Python reader for its transaction log, so this is a small one: the file is a
7-byte header (`:W&B`, magic 0xBEE1, version 0) followed by 32 KiB blocks of LevelDB-log-style
chunks (CRC, little-endian length, type: full / first / middle / last; a block's tail shorter
than a chunk header is padding), each record a `wandb_internal_pb2.Record` protobuf. The sweep
runner reads a trial's metric from here, as the W&B server would after `wandb sync`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline run logged: config updates, history rows, summary, artifacts, exit."""

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    config_updates: int = 0
    exit_code: int | None = None


def read_runs(paths: list[Path]) -> OfflineRun:
    """Parse a run's `.wandb` files, oldest first (a resumed run has one per session)."""
    run = OfflineRun()
    for path in paths:
        for record in _records(path.read_bytes(), path):
            kind = record.WhichOneof("record_type")
            if kind == "config":
                run.config_updates += 1
                for item in record.config.update:
                    run.config[_key(item)] = json.loads(item.value_json)
            elif kind == "history":
                run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "summary":
                for item in record.summary.update:
                    run.summary[_key(item)] = json.loads(item.value_json)
            elif kind == "artifact":
                artifact = record.artifact
                run.artifacts.append(
                    {
                        "name": artifact.name,
                        "type": artifact.type,
                        "aliases": list(artifact.aliases),
                    }
                )
            elif kind == "exit":
                run.exit_code = record.exit.exit_code
    return run


def run_files(wandb_dir: Path, run_id: str) -> list[Path]:
    """The `.wandb` files of run `run_id` under a `wandb/` folder, oldest first."""
    return sorted(wandb_dir.glob(f"*run-*-{run_id}/run-{run_id}.wandb"))


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def _records(data: bytes, path: Path) -> Iterator[wandb_internal_pb2.Record]:
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    position, pending = len(HEADER), b""
    while position + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < CHUNK_HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack_from("<IHB", data, position)
        start = position + CHUNK_HEADER
        chunk, position = data[start : start + length], start + length
        if kind == 0:  # zero padding at the end of a block
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record
