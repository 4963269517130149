"""Modality encoders, temporal heads, and the composed model; every model returns `ModelOutput`."""

from lightning_modules.models.boxes import BoxLayoutTransformer
from lightning_modules.models.clip_head import ClipHead
from lightning_modules.models.decomposed import DecomposedStudent, LocalAttentiveFusion
from lightning_modules.models.encoder import ModalityEncoder
from lightning_modules.models.features import FeatureProjection
from lightning_modules.models.fusion import EarlyFusion
from lightning_modules.models.keypoints import KeypointGCN
from lightning_modules.models.model import ActionModel
from lightning_modules.models.mstcn import MSTCN
from lightning_modules.models.outputs import ModelOutput
from lightning_modules.models.pdan import PDAN
from lightning_modules.models.pyramids import ConvPyramid, TransformerPyramid
from lightning_modules.models.segment_head import SegmentHead
from lightning_modules.models.torchvision_video import TorchvisionVideoEncoder
from lightning_modules.models.video import VideoCNN, VideoTransformer

__all__ = [
    "MSTCN",
    "PDAN",
    "ActionModel",
    "BoxLayoutTransformer",
    "ClipHead",
    "ConvPyramid",
    "DecomposedStudent",
    "EarlyFusion",
    "FeatureProjection",
    "KeypointGCN",
    "LocalAttentiveFusion",
    "ModalityEncoder",
    "ModelOutput",
    "SegmentHead",
    "TorchvisionVideoEncoder",
    "TransformerPyramid",
    "VideoCNN",
    "VideoTransformer",
]
