"""A paper table from its recipe in `configs/experiments/` (`crossdistill reproduce`)."""
