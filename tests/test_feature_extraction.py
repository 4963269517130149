"""`crossdistill extract-features`: one T x D file per video on the video's grid, the encoder's
own outputs put back in place, and a meta.json that FeatureSource reads them back with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.sources.integrity import file_digest
from lightning_modules.commands.extract_features import main
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark
from tests.test_teacher import cli

CONFIGS = REPO_ROOT / "configs"


def test_features_cover_every_video_and_match_the_encoder(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bench = tiny_benchmark(tmp_path_factory)
    teacher = cli([
        "--config", str(CONFIGS / "smoke" / "teacher.yaml"), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null",  # the shared tiny benchmark is not the smoke one
        f"--trainer.default_root_dir={tmp_path / 'runs'}", "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
    ])  # fmt: skip
    teacher.trainer.fit(teacher.model, teacher.datamodule)
    checkpoint = tmp_path / "flow.ckpt"
    teacher.trainer.save_checkpoint(checkpoint)
    out = tmp_path / "features"
    data = [
        "--config", str(CONFIGS / "data" / "synthetic.yaml"), f"--data.init_args.root={bench}",
        "--data.init_args.load=[flow]", "--data.init_args.modalities.flow.init_args.size=32",
        "--data.init_args.num_workers=0", "--data.init_args.window_seconds=3.2",
        "--data.init_args.window_steps=32",  # the smoke teacher's tiles, compared below
    ]  # fmt: skip
    assert main([*data, "--checkpoint", str(checkpoint), "--out", str(out)]) == 0

    meta = json.loads((out / "meta.json").read_text())
    assert meta["checkpoint_blake2b"] == file_digest(checkpoint)
    assert (meta["fps"], meta["stride"], meta["window"], meta["feature_dim"]) == (10.0, 1, 1, 32)
    database = json.loads((bench / "annotations" / "activitynet.json").read_text())["database"]
    assert meta["videos"] == len(database)
    for video_id, video in database.items():
        features = np.load(out / f"{video_id}.npy")
        assert features.shape == (round(video["duration"] * 10), 32)
        assert np.isfinite(features).all() and np.abs(features).sum(axis=1).min() > 0

    # the first test tile of a video, run through the encoder by hand
    teacher.datamodule.setup("test")
    sample = teacher.datamodule.datasets["test"][0]
    encoder = teacher.model.model.encoder.eval()
    with torch.no_grad():
        expected = encoder({"flow": sample.inputs["flow"]}, sample.mask)[0].T.numpy()
    written = np.load(out / f"{sample.meta['video_id']}.npy")
    valid = sample.mask[0].numpy()
    np.testing.assert_allclose(written[: valid.sum()], expected[valid], rtol=1e-4, atol=1e-5)

    pooled = tmp_path / "pooled"
    assert main([*data, "--checkpoint", str(checkpoint), "--out", str(pooled), "--pool=4"]) == 0
    first = next(iter(database))
    np.testing.assert_allclose(
        np.load(pooled / f"{first}.npy")[0], np.load(out / f"{first}.npy")[:4].mean(0), rtol=1e-5
    )
    assert json.loads((pooled / "meta.json").read_text())["stride"] == 4
