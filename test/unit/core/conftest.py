"""Shared setup of the learning-core tests: one torch thread, fixed seeds.

The core tests run small networks whose ops are too small to gain from a second thread, and on
a shared 2-core machine OpenMP's spinning threads slow them down by an order of magnitude
whenever another process is busy (measured: 36 ms vs 630 ms per tiny training step).
"""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_fixed_seeds():
    # Per test, not at import: tests elsewhere in the session (CLIs run in-process) change the
    # thread count, and a different count changes float reduction order and so the results.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)
