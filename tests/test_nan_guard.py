"""`NonFiniteGuard`: a NaN loss stops the run with a report of the step, the bad loss terms and
the batch's windows (`--nan_guard stop`, the default), or skips the step (`--nan_guard skip`)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lightning_modules.commands import main
from lightning_modules.runs.nan_guard import NonFiniteError, NonFiniteGuard
from tests.conftest import REPO_ROOT

SMOKE = REPO_ROOT / "configs" / "smoke" / "teacher.yaml"
POISON = "--trainer.callbacks+={class_path: tests.fault_helpers.PoisonBatch, init_args: {step: 1}}"


def fit(bench: Path, runs: Path, *extra: str) -> int:
    """One 4-step epoch of the smoke teacher on the shared tiny benchmark, in this process."""
    return main([
        "fit", "--config", str(SMOKE), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={runs}",
        "--trainer.max_epochs=1", "--trainer.num_sanity_val_steps=0",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_model_summary=false", "--run_name=a", POISON, *extra,
    ])  # fmt: skip


def poisoned_window(err: str) -> str:
    return re.search(r"crossdistill-test: poisoned (.+)", err).group(1)


def test_nan_loss_stops_the_run_with_step_terms_and_windows(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fit(bench, tmp_path) == 1
    err = capsys.readouterr().err
    report = err[err.index("non-finite training loss") :]
    assert "global step 1" in report
    assert "loss=nan" in report
    assert poisoned_window(err) in report  # the video id and [t0, t1) of the bad sample
    assert "gradients: model." in report
    assert "--nan_guard skip" in report  # what to do
    assert not (tmp_path / "a" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_skip_drops_the_bad_step_and_training_goes_on(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fit(bench, tmp_path, "--nan_guard=skip") == 0
    assert "step skipped" in capsys.readouterr().err
    checkpoint = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 4  # every batch counted, the bad one without an update
    assert checkpoint["callbacks"]["NonFiniteGuard"] == {"skipped": 1}
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    # AdamW's moments saw three updates, not four: the skipped step left them alone
    steps = {float(s["step"]) for s in checkpoint["optimizer_states"][0]["state"].values()}
    assert steps == {3.0}


def test_off_removes_the_guard(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import BASE, print_config

    assert print_config(capsys, *BASE)["nan_guard"] == "stop"
    assert print_config(capsys, *BASE, "--nan_guard=off")["nan_guard"] == "off"
    with pytest.raises(SystemExit):
        main(["fit", *BASE, "--nan_guard=maybe", "--print_config"])


class Module(nn.Module):
    """Stands in for a DistillModule: named loss terms and parameters with gradients."""

    def __init__(self, terms: dict[str, float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.weight.grad = torch.tensor([1.0, math.inf])
        self.loss_terms = {k: torch.tensor(v) for k, v in terms.items()}
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: float, **kwargs: object) -> None:
        self.logged[name] = value


def stub_trainer() -> SimpleNamespace:
    return SimpleNamespace(
        precision_plugin=SimpleNamespace(), world_size=1, global_rank=0, global_step=7
    )


def test_report_names_the_distillation_terms_that_went_bad() -> None:
    guard = NonFiniteGuard()
    module = Module({"task": 0.7, "AtomicContrastive": math.nan, "loss": math.nan})
    times = {"t0": torch.tensor([0.0, 3.2]), "t1": torch.tensor([3.2, 6.4])}
    meta = {"video_id": ["v1", "v2"], **times}
    guard.on_train_batch_start(stub_trainer(), module, {"meta": meta}, 0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(NonFiniteError) as error:
        guard.on_before_optimizer_step(stub_trainer(), module, optimizer)
    message = str(error.value)
    assert "global step 7" in message
    assert "AtomicContrastive=nan" in message and "task=" not in message
    assert "gradients: weight" in message
    assert "v1 [0, 3.2) s, v2 [3.2, 6.4) s" in message


def test_skip_leaves_parameters_and_optimiser_state_unchanged() -> None:
    guard = NonFiniteGuard("skip")
    module = Module({"loss": 1.0})  # finite loss, infinite gradient
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.1)
    guard.on_before_optimizer_step(stub_trainer(), module, optimizer)
    optimizer.step()
    assert torch.equal(module.weight.detach(), torch.ones(2))
    assert optimizer.state_dict()["state"] == {}
    assert guard.skipped == 1 and module.logged == {"train/skipped_steps": 1.0}
