"""The segment detector's two hot spots on a CPU, each against the way it was computed before:

- windowed self-attention (ActionFormer's, window 19), forward + backward: in blocks of queries
  through one banded mask (`LocalSelfAttention`, what the detector runs) against a window of
  keys gathered for every step (`unfold` + `einsum`, the alternative written out below);
- soft-NMS of one video's candidates (8 classes, keep 200): the greedy loop in NumPy
  (`lightning_modules.postprocessing.soft_nms`) against the same loop in torch.

    .venv/bin/python experiments/benchmarks/segment_detector.py [--steps 320] [--batch 8]

Prints milliseconds per call, the ratio (alternative / ours) and the largest difference of the
outputs, with the torch threads and the machine's load. `--tiny` (the tests) checks the script.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.models.pyramids import LocalSelfAttention
from lightning_modules.postprocessing import Detections, soft_nms


def gathered_window_attention(layer: LocalSelfAttention, x: Tensor, mask: Tensor) -> Tensor:
    """The alternative: per step, its window of keys and values gathered by `unfold`."""
    radius, window = layer.window // 2, layer.window
    q, k, v = (
        part.unflatten(-1, (layer.heads, -1)).transpose(1, 2)
        for part in layer.qkv(x).chunk(3, dim=-1)
    )  # (B, H, T, d)
    k = F.pad(k, (0, 0, radius, radius)).unfold(2, window, 1)  # (B, H, T, d, w)
    v = F.pad(v, (0, 0, radius, radius)).unfold(2, window, 1)
    seen = F.pad(mask.float(), (radius, radius)).unfold(1, window, 1) > 0.5
    seen[..., radius] = True
    scores = torch.einsum("bhtd,bhtdw->bhtw", q, k) / math.sqrt(q.shape[-1])
    attention = scores.masked_fill(~seen[:, None], float("-inf")).softmax(dim=-1)
    out = torch.einsum("bhtw,bhtdw->bhtd", attention, v)
    return layer.out(out.transpose(1, 2).flatten(2))


def torch_soft_nms(detections: Detections, sigma: float, min_score: float, limit: int) -> Tensor:
    """The alternative: the same greedy loop on torch tensors; returns the kept indices."""
    segments, scores, labels = detections
    scores, alive, kept = scores.clone(), torch.ones_like(scores, dtype=torch.bool), []
    while len(kept) < limit and bool(alive.any()):
        best = torch.argmax(torch.where(alive, scores, -torch.inf))
        kept.append(best)
        alive[best] = False
        rival = alive & (labels == labels[best])
        inter = (
            torch.minimum(segments[best, 1], segments[:, 1])
            - torch.maximum(segments[best, 0], segments[:, 0])
        ).clamp(min=0)
        union = (segments[best, 1] - segments[best, 0]) + (segments[:, 1] - segments[:, 0]) - inter
        iou = torch.where(union > 0, inter / union, (segments[:, 0] == segments[best, 0]).float())
        scores = torch.where(rival, scores * torch.exp(-(iou**2) / sigma), scores)
        alive &= scores >= min_score
    return torch.stack(kept)


def milliseconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1000 * (time.perf_counter() - started) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=320, help="time steps (the demo's windows)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=1500, help="soft-NMS input segments")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="a check of the script (tests)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.batch, args.candidates, args.repeats = 40, 2, 60, 1
    torch.manual_seed(0)
    layer = LocalSelfAttention(128, heads=4, window=19)
    x = torch.randn(args.batch, args.steps, 128, requires_grad=True)
    mask = torch.ones(args.batch, args.steps, dtype=torch.bool)
    mask[0, args.steps * 2 // 3 :] = False  # one padded sample

    def step(attend: Callable[[LocalSelfAttention, Tensor, Tensor], Tensor]) -> Callable:
        return lambda: attend(layer, x, mask).square().mean().backward()

    ours = milliseconds(step(lambda m, a, b: m(a, b)), args.repeats)
    other = milliseconds(step(gathered_window_attention), args.repeats)
    with torch.no_grad():
        gap = (layer(x, mask) - gathered_window_attention(layer, x, mask)).abs().max().item()
    print(
        f"windowed attention, batch {args.batch} x {args.steps} steps x 128 channels, window 19, "
        f"forward + backward: blocks {ours:.1f} ms, gathered windows {other:.1f} ms "
        f"({other / ours:.1f}x), largest difference {gap:.1e}"
    )

    rng = np.random.default_rng(0)
    start = rng.uniform(0, 30, args.candidates)
    detections = Detections(
        torch.tensor(np.stack([start, start + rng.uniform(0.1, 8, args.candidates)], 1)).float(),
        torch.tensor(rng.uniform(0, 1, args.candidates) ** 4).float(),
        torch.tensor(rng.integers(0, 8, args.candidates)),
    )
    ours = milliseconds(lambda: soft_nms(detections, 0.5, 0.001, 200), args.repeats)
    other = milliseconds(lambda: torch_soft_nms(detections, 0.5, 0.001, 200), args.repeats)
    kept = soft_nms(detections, 0.5, 0.001, 200)
    same = torch.equal(
        kept.segments, detections.segments[torch_soft_nms(detections, 0.5, 0.001, 200)]
    )
    print(
        f"soft-NMS, {args.candidates} candidates, 8 classes, keep 200: NumPy loop {ours:.1f} ms, "
        f"torch loop {other:.1f} ms ({other / ours:.1f}x), same segments kept: {same}"
    )
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
