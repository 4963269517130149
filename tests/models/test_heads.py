"""Temporal heads: output layout, padding never reaching valid outputs, gradient flow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_inputs import padded_mask
from torch import Tensor

from lightning_modules.models import (
    MSTCN,
    PDAN,
    ActionModel,
    ClipHead,
    ConvPyramid,
    FeatureProjection,
    SegmentHead,
    TransformerPyramid,
)
from lightning_modules.models.pdan import DilatedAttention
from lightning_modules.models.pyramids import AffineDropPath, LocalSelfAttention, downsample

B, C, T, VALID, K = 2, 16, 44, 29, 5


def heads() -> dict[str, torch.nn.Module]:
    return {
        "pdan": PDAN(C, K, hidden_channels=16),
        "mstcn": MSTCN(C, K, stages=3, layers=5, channels=16),
        "actionformer": SegmentHead(TransformerPyramid(C, 16, levels=4, heads=2, window=5), K),
        "conv_pyramid": SegmentHead(ConvPyramid(C, 16, levels=4), K),
        "clip": ClipHead(C, {"verb": 3, "noun": K}),
    }


def features_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(B, C, T, generator=generator), padded_mask(B, T, VALID)


def test_dense_heads_layout() -> None:
    x, mask = features_and_mask()
    for name, stages, taps in (
        ("pdan", 1, [*(f"block{i}" for i in range(5)), "head"]),
        ("mstcn", 3, ["stage0", "stage1", "stage2", "head"]),
    ):
        out = heads()[name](x, mask)
        assert out.logits.shape == (B, K, T)
        assert out.extras["stage_logits"].shape == (stages, B, K, T)
        torch.testing.assert_close(out.extras["stage_logits"][-1], out.logits)
        assert list(out.taps) == taps
        assert all(tap.shape == (B, 16, T) for tap in out.taps.values())
        assert out.embeddings is x and out.mask is mask
        assert out.taps["head"] is out.taps[taps[-2]]  # the last block or stage


@pytest.mark.parametrize("name", ["actionformer", "conv_pyramid"])
def test_segment_head_layout(name: str) -> None:
    x, mask = features_and_mask()
    out = heads()[name](x, mask)
    padded = 48  # next multiple of 2**3
    lengths = [48, 24, 12, 6]
    points = sum(lengths)
    assert out.logits.shape == (B, K, points)
    assert out.extras["offsets"].shape == (B, 2, points)
    assert (out.extras["offsets"] >= 0).all()
    assert out.extras["points"].shape == (points, 3)
    assert [out.taps[f"level{i}"].shape[-1] for i in range(4)] == lengths
    # level-major points: positions i * stride, the first T points are the grid
    expected = torch.cat([torch.arange(n) * 2**level for level, n in enumerate(lengths)])
    torch.testing.assert_close(out.extras["points"][:, 0], expected.float())
    assert out.extras["points"][:padded, 1].eq(1).all() and out.extras["points"][-6:, 2].eq(3).all()
    # valid points: sample 0 all real steps (T=40), sample 1 the first VALID
    point_mask = out.extras["point_mask"]
    assert point_mask[0, :padded].sum() == T and point_mask[1, :padded].sum() == VALID
    assert point_mask[1, 48:72].sum() == (VALID + 1) // 2


@pytest.mark.parametrize("name", ["pdan", "mstcn", "actionformer", "conv_pyramid", "clip"])
def test_padded_steps_do_not_change_valid_outputs(name: str) -> None:
    """Garbage in padded steps (even in training mode, dropout aside) leaves valid outputs as
    they were: every layer masks its inputs or its attention."""
    head = heads()[name].eval()
    x, mask = features_and_mask()
    noisy = x.clone()
    noisy[1, :, VALID:] = torch.randn(C, T - VALID) * 100
    out, out_noisy = head(x, mask), head(noisy, mask)
    if name == "clip":
        for key in out.logits:
            torch.testing.assert_close(out_noisy.logits[key], out.logits[key])
        return
    if name in ("pdan", "mstcn"):
        torch.testing.assert_close(out_noisy.logits[1, :, :VALID], out.logits[1, :, :VALID])
        return
    valid = out.extras["point_mask"][1]
    torch.testing.assert_close(out_noisy.logits[1][:, valid], out.logits[1][:, valid])
    torch.testing.assert_close(
        out_noisy.extras["offsets"][1][:, valid], out.extras["offsets"][1][:, valid]
    )


@pytest.mark.parametrize("name", ["pdan", "mstcn"])
def test_dense_heads_on_a_padded_window_match_the_unpadded_sequence(name: str) -> None:
    """What a padded window predicts at its valid steps is what the bare sequence predicts."""
    head = heads()[name].eval()
    x, mask = features_and_mask()
    short = head(x[1:, :, :VALID], torch.ones(1, VALID, dtype=torch.bool))
    torch.testing.assert_close(head(x, mask).logits[1:, :, :VALID], short.logits)


def test_dilated_attention_sees_only_t_minus_d_t_and_t_plus_d() -> None:
    layer = DilatedAttention(4, dilation=3)
    x = torch.randn(1, 4, 20)
    base = layer(x)
    for position, affected in ((10, {7, 10, 13}), (0, {0, 3})):
        changed = x.clone()
        changed[..., position] += 5.0
        moved = (layer(changed) - base).abs().sum(1)[0] > 1e-6
        assert set(torch.nonzero(moved).flatten().tolist()) == affected


def official_dal(x: Tensor, w_query: Tensor, w_key: Tensor, rel_t: Tensor, d: int) -> Tensor:
    """A transcription of the equations of the authors' DAL (dairui01/PDAN, PDAN.py), one
    group: zero-pad the input by d, keys by a bias-free 1x1 conv, the three dilated keys of each
    step from a window of 2d + 1, values = keys + rel_t `(C, 1, 3)`, softmax over the three of
    query * key, weighted sum of the values."""
    q = torch.einsum("oc,bct->bot", w_query, x)
    k = torch.einsum("oc,bct->bot", w_key, F.pad(x, (d, d)))
    windows = k.unfold(2, 2 * d + 1, 1)  # (B, C, T, 2d + 1)
    k = windows[..., [0, d, 2 * d]]
    v = k + rel_t
    attention = F.softmax(q[..., None] * k, dim=-1)
    return (attention * v).sum(-1)


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_dilated_attention_equals_the_authors_layer(dilation: int) -> None:
    layer = DilatedAttention(6, dilation=dilation)
    assert layer.query.bias is None and layer.key.bias is None
    x = torch.randn(2, 6, 11)
    rel_t = layer.relative.detach().permute(1, 2, 0)  # (3, C, 1) -> the authors' (C, 1, 3)
    expected = official_dal(
        x, layer.query.weight[..., 0], layer.key.weight[..., 0], rel_t, dilation
    )
    torch.testing.assert_close(layer(x), expected.detach(), rtol=1e-5, atol=1e-5)


def test_local_attention_stays_within_its_window() -> None:
    layer = LocalSelfAttention(8, heads=2, window=5)
    x = torch.randn(1, 20, 8)
    mask = torch.ones(1, 20, dtype=torch.bool)
    changed = x.clone()
    changed[:, 10] += 5.0
    moved = (layer(changed, mask) - layer(x, mask)).abs().sum(-1)[0] > 1e-6
    assert torch.nonzero(moved).flatten().tolist() == [8, 9, 10, 11, 12]


def test_local_attention_leaves_padded_keys_out() -> None:
    """On a padded sequence, valid steps get what they get on the bare sequence."""
    layer = LocalSelfAttention(8, heads=2, window=7)
    x = torch.randn(1, 20, 8)
    mask = torch.tensor([[True] * 12 + [False] * 8])
    short = layer(x[:, :12], torch.ones(1, 12, dtype=torch.bool))
    torch.testing.assert_close(layer(x, mask)[:, :12], short)


def windowed_attention_step_by_step(layer: LocalSelfAttention, x: Tensor, mask: Tensor) -> Tensor:
    """The definition, one query at a time: softmax over the valid keys within `window // 2`
    steps (the query itself always), as ActionFormer's sliding-window attention."""
    heads, radius = layer.heads, layer.window // 2
    q, k, v = (p.unflatten(-1, (heads, -1)) for p in layer.qkv(x).chunk(3, dim=-1))  # (B,T,H,d)
    out = torch.zeros_like(q)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            keys = [
                s
                for s in range(max(0, t - radius), min(x.shape[1], t + radius + 1))
                if bool(mask[b, s]) or s == t
            ]
            scores = torch.einsum("hd,shd->hs", q[b, t], k[b, keys]) / q.shape[-1] ** 0.5
            out[b, t] = torch.einsum("hs,shd->hd", scores.softmax(-1), v[b, keys])
    return layer.out(out.flatten(2))


@pytest.mark.parametrize(("steps", "window", "block"), [(45, 7, 8), (13, 19, 32), (64, 5, 16)])
def test_local_attention_in_blocks_matches_the_step_by_step_definition(
    steps: int, window: int, block: int
) -> None:
    torch.manual_seed(0)
    layer = LocalSelfAttention(8, heads=2, window=window, block=block)
    x = torch.randn(3, steps, 8)
    mask = torch.ones(3, steps, dtype=torch.bool)
    mask[1, steps // 2 :] = False  # padded at the end
    mask[2, ::3] = False  # holes: keys left out, those queries still see themselves
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x, mask), windowed_attention_step_by_step(layer, x, mask), rtol=1e-5, atol=1e-5
        )


def test_affine_drop_path_scales_then_drops_whole_samples() -> None:
    """ActionFormer's AffineDropPath: per-channel scale (1e-4 at start); in training each
    sample's branch is dropped with probability p or kept and divided by 1 - p."""
    torch.manual_seed(0)
    path = AffineDropPath(4, p=0.5)
    x = torch.randn(400, 3, 4)
    path.eval()
    torch.testing.assert_close(path(x), x * 1e-4)
    path.train()
    out = path(x) / (x * 1e-4)
    per_sample = out.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))  # whole samples
    kept = per_sample[:, 0]
    assert set(kept.round(decimals=4).tolist()) == {0.0, 2.0}
    assert 0.35 < float((kept == 0).float().mean()) < 0.65


def test_transformer_block_without_drop_path_adds_its_branches_unscaled() -> None:
    plain = TransformerPyramid(C, 16, levels=2, heads=2, window=5, drop_path=0.0)
    assert not any("scale" in name for name, _ in plain.named_parameters())
    scaled = TransformerPyramid(C, 16, levels=2, heads=2, window=5)  # ActionFormer's 0.1
    assert sum("path_attention.scale" in name for name, _ in scaled.named_parameters()) == 3


def test_downsample_ignores_padding_and_halves_the_mask() -> None:
    x = torch.tensor([[[-1.0, -2.0, -3.0, -4.0, -5.0, 9.0, 9.0, 9.0]]])
    mask = torch.tensor([[True] * 5 + [False] * 3])
    pooled, coarse = downsample(x, mask)
    assert coarse.tolist() == [[True, True, True, False]]
    torch.testing.assert_close(pooled, torch.tensor([[[-1.0, -2.0, -4.0, 0.0]]]))


@pytest.mark.parametrize("name", ["actionformer", "conv_pyramid"])
def test_segment_head_on_a_padded_window_matches_the_unpadded_sequence(name: str) -> None:
    """Level by level, valid points predict what they predict on the bare sequence (which the
    head pads to its own, shorter multiple of the coarsest stride)."""
    head = heads()[name].eval()
    x, mask = features_and_mask()
    padded = head(x[1:], mask[1:])
    short = head(x[1:, :, :VALID], torch.ones(1, VALID, dtype=torch.bool))
    for level in range(4):
        valid = -(-VALID // 2**level)
        a, b = (out.extras["points"][:, 2] == level for out in (padded, short))
        torch.testing.assert_close(
            padded.logits[..., a][..., :valid], short.logits[..., b][..., :valid]
        )
        torch.testing.assert_close(
            padded.extras["offsets"][..., a][..., :valid],
            short.extras["offsets"][..., b][..., :valid],
        )


def test_clip_head_single_and_multi_head() -> None:
    x, mask = features_and_mask()
    single = ClipHead(C, K)(x, mask)
    assert single.logits.shape == (B, K)
    assert single.taps["pooled"].shape == (B, C)
    torch.testing.assert_close(single.taps["pooled"][1], x[1, :, :VALID].mean(-1))
    multi = heads()["clip"](x, mask)
    assert {k: v.shape for k, v in multi.logits.items()} == {"verb": (B, 3), "noun": (B, K)}


@pytest.mark.parametrize("name", ["pdan", "mstcn", "actionformer", "conv_pyramid", "clip"])
def test_gradients_reach_every_head_parameter(name: str) -> None:
    torch.manual_seed(0)
    head = heads()[name].train()
    x, mask = features_and_mask()
    x.requires_grad_(True)
    out = head(x, mask)
    logits = (
        out.logits
        if isinstance(out.logits, torch.Tensor)
        else torch.cat(list(out.logits.values()), -1)
    )
    loss = (logits * torch.randn_like(logits)).sum()
    if "offsets" in out.extras:
        loss = loss + out.extras["offsets"].sum()
    if "stage_logits" in out.extras:
        loss = loss + out.extras["stage_logits"].sum()
    loss.backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    assert x.grad[1, :, VALID:].abs().sum() == 0  # nothing flows into padded steps


def test_action_model_checks_channels_and_composes() -> None:
    encoder = FeatureProjection(24, C)
    with pytest.raises(ValueError, match="in_channels to 16"):
        ActionModel(encoder, PDAN(32, K))
    model = ActionModel(encoder, PDAN(C, K))
    inputs = {"features": torch.randn(B, 24, T)}
    mask = padded_mask(B, T, VALID)
    out = model(inputs, mask)
    torch.testing.assert_close(out.embeddings, encoder(inputs, mask))
    assert out.logits.shape == (B, K, T)
