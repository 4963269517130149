"""Distillation objectives: each a small module, `forward(student, teachers, batch) -> Tensor`
on the common `ModelOutput`s (see `base.py` for the contract), one file per family."""

from lightning_modules.distillation.augmented_rgb import (
    AtomicContrastive,
    BoundarySaliency,
    GlobalRelation,
)
from lightning_modules.distillation.base import (
    Objective,
    ObjectiveNameError,
    PairwiseObjective,
    named_objectives,
)
from lightning_modules.distillation.classic import (
    AttentionTransfer,
    FitNet,
    LogitKD,
    SimilarityPreserving,
)
from lightning_modules.distillation.decomposed import (
    AppearanceTaskLoss,
    MotionFeatureImitation,
    MotionPredictionImitation,
)
from lightning_modules.distillation.ensemble import (
    EnsembleLogitKD,
    ensemble_logits,
    held_out_weights,
    sample_weights,
)

__all__ = [
    "AppearanceTaskLoss",
    "AtomicContrastive",
    "AttentionTransfer",
    "BoundarySaliency",
    "EnsembleLogitKD",
    "FitNet",
    "GlobalRelation",
    "LogitKD",
    "MotionFeatureImitation",
    "MotionPredictionImitation",
    "Objective",
    "ObjectiveNameError",
    "PairwiseObjective",
    "SimilarityPreserving",
    "ensemble_logits",
    "held_out_weights",
    "named_objectives",
    "sample_weights",
]
