"""A checkpoint loaded into another model configuration fails with the keys that differ and the
fix (the run's own config.yaml), from `crossdistill test` and from `load_from_checkpoint`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.commands import main
from lightning_modules.models import PDAN, ActionModel, VideoCNN
from lightning_modules.task_module import CheckpointMismatchError, check_state_dict
from lightning_modules.teacher import TeacherModule
from tests.conftest import REPO_ROOT
from tests.data_helpers import tiny_benchmark

SMOKE = REPO_ROOT / "configs" / "smoke" / "teacher.yaml"
WIDER = "--model.init_args.model.init_args.head.init_args.hidden_channels=48"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step smoke teacher run; its folder."""
    bench = tiny_benchmark(tmp_path_factory)
    runs = tmp_path_factory.mktemp("runs")
    assert main([
        "fit", "--config", str(SMOKE), f"--data.init_args.root={bench}",
        "--data.init_args.synthetic=null", f"--trainer.default_root_dir={runs}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_model_summary=false", "--run_name=a",
    ]) == 0  # fmt: skip
    return runs / "a"


def test_cli_test_takes_the_model_arguments_from_the_checkpoint(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LightningCLI parses the checkpoint's hyperparameters over the given model config."""
    checkpoint = trained / "checkpoints" / "last.ckpt"
    config = ["--config", str(trained / "config.yaml")]
    assert main(["test", *config, WIDER, f"--ckpt_path={checkpoint}"]) == 0
    recorded = yaml.safe_load((trained / "test" / "config.yaml").read_text())
    assert (
        recorded["model"]["init_args"]["model"]["init_args"]["head"]["init_args"]["hidden_channels"]
        == 32
    )


def test_cli_test_with_weights_of_another_model_names_keys_and_config(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weights that do not fit the model their hyperparameters build (e.g. saved by older code
    with renamed layers) fail with the keys and the fix, not a traceback."""
    payload = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=False)
    state = payload["state_dict"]
    payload["state_dict"] = {
        k.replace("model.head.", "model.classifier."): v for k, v in state.items()
    }
    renamed = trained / "checkpoints" / "renamed.ckpt"
    torch.save(payload, renamed)
    config = ["--config", str(trained / "config.yaml")]
    assert main(["test", *config, f"--ckpt_path={renamed}"]) == 1
    err = capsys.readouterr().err
    assert f"{renamed} was trained with another model configuration" in err
    assert "missing (" in err and "unexpected (" in err and "model.classifier." in err
    assert f"--config {trained / 'config.yaml'} --ckpt_path best" in err
    assert "Traceback" not in err


def test_load_from_checkpoint_with_other_model_arguments(trained: Path) -> None:
    checkpoint = trained / "checkpoints" / "last.ckpt"
    encoder = VideoCNN(
        modality="flow", in_channels=2, stem_channels=8, widths=[16, 32], depths=[1, 1]
    )
    wider = ActionModel(encoder, PDAN(in_channels=32, num_classes=8, hidden_channels=48))
    with pytest.raises(CheckpointMismatchError, match=r"shape \(\d+\): model\.head\.") as error:
        TeacherModule.load_from_checkpoint(checkpoint, model=wider)
    assert "config.yaml" in str(error.value)
    assert isinstance(TeacherModule.load_from_checkpoint(checkpoint), TeacherModule)


def test_missing_and_unexpected_keys_are_listed_briefly() -> None:
    expected = {f"model.layer{i}.weight": torch.zeros(2) for i in range(8)}
    loaded = {"model.layer0.weight": torch.zeros(2), "model.other.bias": torch.zeros(3)}
    with pytest.raises(CheckpointMismatchError) as error:
        check_state_dict(expected, loaded)
    message = str(error.value)
    assert "missing (7): model.layer1.weight" in message and "(and 2 more)" in message
    assert "unexpected (1): model.other.bias" in message
    assert "shape" not in message
    check_state_dict(expected, dict(expected))  # equal keys and shapes pass
