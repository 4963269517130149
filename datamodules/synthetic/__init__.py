"""The synthetic multimodal benchmark: motion carries the label, appearance does not."""

from datamodules.synthetic.generator import SyntheticConfig, generate_benchmark

__all__ = ["SyntheticConfig", "generate_benchmark"]
