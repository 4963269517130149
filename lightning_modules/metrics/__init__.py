"""Evaluation metrics: numpy algorithms, and torchmetrics wrappers that are exact under DDP.

Each family's algorithm is a function on arrays in its own file (`frame_map.py`,
`segment_map.py`, `accuracy.py`, `calibration.py`; `sample_ids.py` orders samples): what
`crossdistill evaluate` runs, without importing torch. `streaming.py` holds the `Metric`s that
training and testing update batch by batch: they gather rows across ranks, count every sample
once and call the same functions.
"""
