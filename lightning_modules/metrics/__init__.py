"""Evaluation metrics: pure numpy algorithms, and torchmetrics wrappers that are exact under DDP.

Each file holds one family: the algorithm as a function on arrays (used by
`crossdistill evaluate`) and a `Metric` that gathers rows across ranks and counts every sample
once (`samples.py`).
"""

from lightning_modules.metrics.accuracy import EpicAccuracy, TopKAccuracy
from lightning_modules.metrics.calibration import ExpectedCalibrationError
from lightning_modules.metrics.frame_map import FrameMAP
from lightning_modules.metrics.segment_map import SegmentMAP

__all__ = ["EpicAccuracy", "ExpectedCalibrationError", "FrameMAP", "SegmentMAP", "TopKAccuracy"]
