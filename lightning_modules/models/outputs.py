"""The one output structure of every model, so that any distillation objective reads any model.

Time grid: `T` below is always the sample's grid, the length of `batch["mask"]` (one step per
`batch["meta"]["stride"]` seconds; step `t` stands for the time `(t + 0.5) * stride` after the
window start). Encoders whose modality has more or fewer frames than grid steps, or that
downsample time inside, resample their output to the grid before the head sees it, so
`embeddings`, dense logits and every `(B, C, T)` tap share the grid and `mask`.

Per task family:

- dense (PDAN, MS-TCN): `logits (B, K, T)` per step; `extras["stage_logits"] (S, B, K, T)`,
  the logits of every refinement stage (S = 1 for single-stage heads), last stage = `logits`.
- segments (`SegmentHead` over any pyramid): `logits (B, K, P)` per pyramid point; points are
  level-major: level 0 (stride 1) first with one point per step of the padded grid, then
  level 1 (stride 2), and so on; the first `T` points are the grid. `extras`:
  `offsets (B, 2, P)` non-negative distances from each point to the segment start and end in
  units of the point's stride; `points (P, 3)` = (grid position, stride, level) of each point;
  `point_mask (B, P)` valid points. The padded grid is `T` rounded up to a multiple of the
  coarsest stride, so `P` depends on `T`; taps `level{l}` are `(B, C, T_pad / 2**l)`.
- clips (`ClipHead`): `logits (B, K)`, or a dict of them per head (`verb`, `noun`); test views
  arrive folded into the batch (see `lightning_modules.tasks.clips`), so `B` counts views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

HEAD_TAP = "head"
"""The tap every head fills with its last representation (what its classifier reads)."""
EMBEDDINGS_TAP = "embeddings"
"""The `tap:` value that reads `ModelOutput.embeddings`, the head's input."""


@dataclass
class ModelOutput:
    """What a model returns for a batch, for every task.

    embeddings: `(B, C, T)` the head's input features on the grid, what feature-level,
        contrastive and relation distillation read.
    logits: task logits, layout per family in the module docstring; a dict per head for
        multi-head clip models.
    taps: named intermediate tensors of the head (`block{i}`, `stage{i}`, `level{i}`, `pooled`)
        for objectives that imitate something other than the embeddings. Every head also names
        its own last representation `head` (`HEAD_TAP`), what its classifier reads: PDAN's last
        block, MS-TCN's last stage, the segment head's finest level, the clip head's pooled
        features. Feature-level objectives read `head` by default (`tap:`), as Dai et al.
        distil the detection head's last temporal block; `tap: embeddings` reads the head's
        input instead.
    extras: task-specific tensors the loss or the decoding needs (`stage_logits`, `offsets`,
        `points`, `point_mask`).
    mask: `(B, T)` valid steps of `embeddings` (the batch mask).
    """

    embeddings: Tensor
    logits: Tensor | dict[str, Tensor]
    mask: Tensor
    taps: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)
