"""`crossdistill reproduce`: a paper table from its recipe in `configs/experiments/`."""
