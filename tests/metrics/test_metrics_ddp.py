"""Two CPU processes (gloo) give exactly the values of one process on the same samples.

Each rank sees a different number of videos, one video twice (as a DistributedSampler pads),
batches of different sizes, and videos with different numbers of rows; in one scenario a rank
sees nothing at all.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler

from lightning_modules.metrics.streaming import (
    EpicAccuracy,
    ExpectedCalibrationError,
    FrameMAP,
    SegmentMAP,
    TopKAccuracy,
)

VIDEOS, CLASSES, STEPS, WORLD = 7, 4, 12, 2
SCENARIOS = {
    # DistributedSampler without shuffling: rank 0 gets 0 2 4 6, rank 1 gets 1 3 5 and 0 again
    "sampler": [
        list(DistributedSampler(range(VIDEOS), WORLD, r, shuffle=False)) for r in range(WORLD)
    ],
    "uneven": [[0, 1, 2, 3, 4], [5, 6, 0]],
    "idle_rank": [list(range(VIDEOS)), []],
}


def make_samples(seed: int = 0) -> list[dict]:
    """One dict per video; coarse scores so that ties decide something."""
    rng = np.random.default_rng(seed)
    samples = []
    for v in range(VIDEOS):
        n_pred, n_gt = int(rng.integers(0, 9)), int(rng.integers(1, 4))
        starts = rng.integers(0, 10, n_pred + n_gt).astype(np.float64)
        ends = starts + rng.integers(0, 5, n_pred + n_gt)
        segments = torch.from_numpy(np.stack([starts, ends], axis=1))
        labels = torch.from_numpy(rng.integers(0, CLASSES, n_pred + n_gt))
        logits = torch.from_numpy(rng.normal(size=(2 * CLASSES,)))
        samples.append(
            {
                "id": f"video_{v}",
                "pred": {
                    "segments": segments[:n_pred],
                    "scores": torch.from_numpy(rng.integers(1, 4, n_pred) / 4),
                    "labels": labels[:n_pred],
                },
                "gt": {"segments": segments[n_pred:], "labels": labels[n_pred:]},
                "frame_scores": torch.from_numpy(rng.integers(0, 5, (CLASSES, STEPS)) / 4),
                "frame_targets": torch.from_numpy(rng.uniform(size=(CLASSES, STEPS)) < 0.3),
                "frame_mask": torch.arange(STEPS) < int(rng.integers(3, STEPS + 1)),
                "logits": logits,
                "label": int(rng.integers(0, 2 * CLASSES)),
                "noun_logits": torch.from_numpy(rng.normal(size=(CLASSES,))),
                "noun": int(rng.integers(0, CLASSES)),
            }
        )
    return samples


def make_metrics() -> dict:
    return {
        "segments": SegmentMAP(num_classes=CLASSES, tious=(0.3, 0.5, 0.7)),
        "frames": FrameMAP(num_classes=CLASSES),
        "top_k": TopKAccuracy(num_classes=2 * CLASSES, top_k=(1, 3)),
        "epic": EpicAccuracy(num_verbs=2 * CLASSES, num_nouns=CLASSES),
        "ece": ExpectedCalibrationError(num_classes=2 * CLASSES),
    }


def feed(metrics: dict, samples: list[dict], indices: list[int], batch_size: int) -> None:
    for first in range(0, len(indices), batch_size):
        batch = [samples[i] for i in indices[first : first + batch_size]]
        ids = [s["id"] for s in batch]
        logits = torch.stack([s["logits"] for s in batch])
        labels = torch.tensor([s["label"] for s in batch])
        nouns = torch.tensor([s["noun"] for s in batch])
        metrics["segments"].update([s["pred"] for s in batch], [s["gt"] for s in batch], ids)
        metrics["frames"].update(
            torch.stack([s["frame_scores"] for s in batch]),
            torch.stack([s["frame_targets"] for s in batch]),
            torch.stack([s["frame_mask"] for s in batch]),
            ids,
        )
        metrics["top_k"].update(logits, labels, ids)
        metrics["epic"].update(
            logits, torch.stack([s["noun_logits"] for s in batch]), labels, nouns, ids
        )
        metrics["ece"].update(logits.softmax(dim=1), labels, ids)


def compute(metrics: dict) -> dict[str, float]:
    values = {}
    for name, metric in metrics.items():
        result = metric.compute()
        result = result if isinstance(result, dict) else {"value": result}
        values.update({f"{name}/{key}": value.item() for key, value in result.items()})
    return values


def worker(rank: int, port: int, out: str) -> None:
    warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")  # the idle rank
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        samples = make_samples()
        results = {}
        for scenario, split in SCENARIOS.items():
            metrics = make_metrics()
            feed(metrics, samples, split[rank], batch_size=2 + rank)
            results[scenario] = compute(metrics)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two interpreters importing torch: several seconds
def test_two_processes_equal_one(tmp_path: Path) -> None:
    assert sorted(SCENARIOS["sampler"][1]) == [0, 1, 3, 5]  # the padded duplicate is there
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)

    metrics = make_metrics()
    feed(metrics, make_samples(), list(reversed(range(VIDEOS))), batch_size=3)
    single = compute(metrics)
    assert len(single) == 4 + 2 + 2 + 5 + 1
    assert all(np.isfinite(v) for v in single.values())
    for rank in range(WORLD):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        for scenario, values in results.items():
            assert values == single, f"rank {rank}, scenario {scenario}"


def test_a_rank_alone_counts_its_duplicates_once() -> None:
    """The same check without processes: duplicates and order do not change any value."""
    samples = make_samples(1)
    once, twice = make_metrics(), make_metrics()
    feed(once, samples, list(range(VIDEOS)), batch_size=4)
    feed(twice, samples, [3, 0, 6, 5, 4, 3, 2, 1, 0, 6], batch_size=3)
    assert compute(once) == compute(twice)
