"""Fuzzing (hypothesis) of every input a cell or the learner reads from outside.

Each test feeds generated or mutated inputs to one target and asserts the contract: a clear,
specific error (or a safe clamp), never another exception, never a hang. `make test` runs the
CI profile (50 inputs per target); the documented larger run is

    HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest test/fuzz -p no:randomly

(>= 1000 inputs per target; docs/reliability.md lists what it found).
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,  # a slow example is not a failure (2 shared cores)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # CI runs the same inputs every time
)
settings.register_profile("ci", max_examples=50, **_COMMON)
settings.register_profile("fuzz", max_examples=1000, **{**_COMMON, "derandomize": False})
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
