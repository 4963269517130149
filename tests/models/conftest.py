"""Fixtures of the model and task tests."""

from __future__ import annotations

import pytest
import torch

from datamodules.synthetic.actions import BONES


@pytest.fixture
def bones() -> tuple[tuple[int, int], ...]:
    return BONES


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    waiting threads made single optimiser steps 50x slower; restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
