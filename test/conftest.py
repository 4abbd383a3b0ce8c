"""Session-wide test setup.

Every test session talks on its own random ROS_DOMAIN_ID, so parallel or leftover graphs on
the same machine cannot cross-talk; subprocesses inherit it; pytest-xdist workers each get
their own domain (the session's random base plus the worker's number). MuJoCo renders
headless (EGL).

`make test` runs the suite in three sessions (scripts/run_tests.sh): the computation tests
(learning, simulation, parsing, fuzzing) on the xdist workers; then the tests marked `timed`
(every `ros` test and the modules in TIMED_MODULES: node graphs, signals, timed waits) on the
same number of workers, a whole module per worker (`--dist loadfile`, so a module's graph
fixture stays in one process), each worker in its own ROS domain; last the tests marked
`exclusive` (fault schedules and deadlines that need the machine to itself), one at a time.
"""

import json
import os
import random
import subprocess
import sys

import pytest

# Domain ids 0-101 are valid for Fast DDS on Linux without port clashes; avoid 0 (the default
# every stray ROS process uses).
# The controller picks the base before it starts the workers, which inherit it.
_DOMAIN_BASE = int(
    os.environ.setdefault("MTOPT_TEST_DOMAIN_BASE", str(random.SystemRandom().randint(1, 101)))
)
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
os.environ["ROS_DOMAIN_ID"] = str(1 + (_DOMAIN_BASE - 1 + _WORKER) % 101)
# Keep discovery on this machine: tests must never send DDS traffic to other hosts.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


#: Modules whose tests time processes, signals or waits but are not marked `ros`.
TIMED_MODULES = frozenset(
    {
        "test/launch/test_respawn.py",
        "test/sim/test_bulk_worker_restart.py",
        "test/unit/experiments/test_train_sim.py",
        "test/unit/learner/test_ray_backend.py",
    }
)


#: The longest modules of each session (1-2.5 min each in CI on 2 cores), run first: with the
#: xdist schedulers a long module that starts last leaves the other worker idle meanwhile.
LONGEST_FIRST = (
    "test/unit/core/test_learning_e2e.py",
    "test/unit/demo/test_cli.py",
    "test/unit/experiments/test_train_sim.py",
    "test/launch/test_sim_cell_launch.py",
    "test/launch/test_learner_launch.py",
    "test/launch/test_episode_protocol_launch.py",
    "test/sim/test_bulk_collect.py",
)


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("ros") or _module(item) in TIMED_MODULES:
            item.add_marker(pytest.mark.timed)
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item), len(rank)))  # stable: order kept


@pytest.fixture
def run_json_cli():
    """Run `python -m MODULE ARGS...` in a subprocess; assert exit 0 and exactly one JSON line
    on stdout; return it parsed. Every CLI and benchmark has a smoke test through this."""

    def run(module: str, *args: str, timeout: float = 240.0) -> dict:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"{module} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"{module} printed {len(lines)} lines:\n{proc.stdout[-3000:]}"
        return json.loads(lines[0])

    return run
