"""Shared test fixtures: one torch thread for the tiny models, simulated count data (tests/simulated.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module's tiny models: faster, and immune to CPU oversubscription."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
