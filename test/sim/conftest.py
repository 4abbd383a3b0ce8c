"""Fixtures of the simulator tests."""

import pytest

from mtopt_sim.env import MTOptCell


@pytest.fixture(scope="module")
def env():
    """One default simulated cell per test module, reset to scene seed 0."""
    e = MTOptCell()
    e.reset(seed=0)
    yield e
    e.close()
