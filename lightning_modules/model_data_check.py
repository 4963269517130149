"""Does a model fit a dataset? Modalities, input widths and class counts, checked before training.

A model config written for one dataset and a data config for another meet in `reproduce --data`
and in `data-check` with both configs; without this check the first sign is a convolution's
shape error deep in the first training step, naming neither file. The check builds the network
from its config (never a teacher, never a trainer), reads the shapes the data would deliver
(`MultimodalDataModule.input_shapes`, one file at most per modality) and runs the network once on
zeros of those shapes, so every encoder and head sees what training would give it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jsonargparse import ArgumentParser, Namespace
from torch import nn

from lightning_modules.models.encoder import ModalityEncoder
from lightning_modules.models.features import FeatureProjection


class ModelBuildError(ValueError):
    """The network of a model config cannot be built (a missing weights file, a bad argument)."""


def network_of(model_config: Namespace | Mapping[str, Any]) -> nn.Module:
    """The network (`model.init_args.model`) of a parsed TeacherModule/DistillModule config,
    built alone: a DistillModule's teachers are not loaded. `ModelBuildError` with the reason
    (its fix, where the failing class names one) when it cannot be built."""
    config = model_config.as_dict() if isinstance(model_config, Namespace) else model_config
    parser = ArgumentParser()
    parser.add_argument("--network", type=nn.Module)
    try:
        parsed = parser.parse_object({"network": config["init_args"]["model"]})
        return parser.instantiate(parsed).network
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        # jsonargparse lists each failed attempt as "  - reason"; the one with a fix is ours
        reasons = [line.strip(" -") for line in str(err).splitlines() if line.startswith("  - ")]
        reason = next((r for r in reasons if "Fix:" in r), reasons[0] if reasons else str(err))
        raise ModelBuildError(f"the model cannot be built: {reason}") from None


def model_config_problems(
    model_config: Namespace | Mapping[str, Any], datamodule: Any
) -> list[str]:
    """`model_data_problems` of a model config's network; a network that cannot be built (a
    missing weights file) is one problem, with its fix."""
    try:
        network = network_of(model_config)
    except ModelBuildError as err:
        return [str(err)]
    return model_data_problems(network, datamodule)


def model_data_problems(network: nn.Module, datamodule: Any) -> list[str]:
    """What stops `network` from training on `datamodule`'s data, each with its fix; empty when
    it fits."""
    encoders = {
        name or "encoder": module
        for name, module in network.named_modules()
        if isinstance(module, ModalityEncoder)
    }
    loaded = sorted(datamodule.modalities)
    unread = sorted({e.modality for e in encoders.values()} - set(loaded))
    if unread:
        return [
            f"the model reads modalities {unread}, the data config loads {loaded}. Fix: add "
            f"them to data.init_args.modalities (and `load`), or give the model encoders of "
            f"{loaded}"
        ]
    shapes = datamodule.input_shapes
    problems = [
        problem
        for name, encoder in encoders.items()
        if (problem := _width_problem(name, encoder, shapes)) is not None
    ]
    if problems:
        return problems
    steps = datamodule.window_steps
    inputs = {key: torch.zeros(1, *shape) for key, shape in shapes.items()}
    mask = torch.ones(1, steps, dtype=torch.bool)
    network.eval()
    try:
        with torch.no_grad():
            output = network(inputs, mask)
    except (RuntimeError, ValueError, KeyError, IndexError) as err:
        described = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        return [
            f"the model cannot read the data's inputs ({described} per sample): "
            f"{type(err).__name__}: {err}. Fix: make the model's encoders read these shapes"
        ]
    return _class_problems(output.logits, datamodule.num_classes)


def _width_problem(name: str, encoder: ModalityEncoder, shapes: Mapping[str, tuple]) -> str | None:
    """Feature widths differ between datasets (I3D 1024 or 2048, SlowFast 2304): say which."""
    if not isinstance(encoder, FeatureProjection):
        return None
    width = shapes[encoder.modality][0]
    needed = encoder.channels[1] if encoder.channels else encoder.project.in_channels
    if width >= needed if encoder.channels else width == needed:
        return None
    reads = f"channels {list(encoder.channels)}" if encoder.channels else f"{needed} channels"
    where = f"that encoder's in_channels (and channels) to fit {width}-wide features"
    if not encoder.channels and all(part.isidentifier() for part in name.split(".")):
        keys = "".join(f".init_args.{part}" for part in name.split("."))
        where = f"--model.init_args.model{keys}.init_args.in_channels={width}"
    return (
        f"{name} reads {reads} of {encoder.modality!r}, the data's {encoder.modality} features "
        f"are {width} wide. Fix: set {where}, or point the data at the features the model was "
        "made for"
    )


def _class_problems(logits: Any, classes: int | Mapping[str, int]) -> list[str]:
    """The heads' class counts against the data's (one count, or one per verb/noun head)."""
    if isinstance(classes, Mapping):
        if not isinstance(logits, Mapping) or set(logits) != set(classes):
            heads = sorted(logits) if isinstance(logits, Mapping) else "one head"
            return [
                f"the data has heads {sorted(classes)} ({dict(classes)} classes), the model has "
                f"{heads}. Fix: give the clip head num_classes: {dict(classes)}"
            ]
        predicted = {head: int(logits[head].shape[1]) for head in classes}
        if predicted == dict(classes):
            return []
        return [
            f"the model predicts {predicted} classes, the data has {dict(classes)}. Fix: set the "
            f"head's num_classes to {dict(classes)}"
        ]
    if isinstance(logits, Mapping):
        return [
            f"the model has heads {sorted(logits)}, the data one label set of {classes} classes. "
            f"Fix: set the clip head's num_classes: {classes}"
        ]
    if logits.shape[1] == classes:
        return []
    return [
        f"the model predicts {logits.shape[1]} classes, the data has {classes}. Fix: set the "
        f"head's num_classes to {classes}"
    ]
