"""Session-wide test setup.

Every test session talks on its own random ROS_DOMAIN_ID, so parallel or leftover graphs on
the same machine cannot cross-talk; subprocesses inherit it. `make test` runs the session on
pytest-xdist workers: each worker gets its own domain (the session's random base plus the
worker's number). MuJoCo renders headless (EGL).

Scheduling (`--dist loadgroup`): the modules that run a whole cell graph as processes (timed
waits for episodes, faults, respawns) form one group, run one after the other on one worker
as in a serial run; every other module is a group of its own, so a module's fixtures are set
up once.
"""

import contextlib
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


#: Modules that run a cell graph (many node processes, waits timed for a machine of 2 cores).
GRAPH_MODULES = frozenset(
    {
        "test/launch/test_episode_protocol_launch.py",
        "test/launch/test_learner_launch.py",
        "test/launch/test_multiprocess.py",
        "test/launch/test_policy_bench.py",
        "test/launch/test_reliability_campaign.py",
        "test/launch/test_respawn.py",
        "test/launch/test_sim_cell_launch.py",
        "test/ros/policy/test_cell_faults.py",
        "test/unit/demo/test_cli.py",
        "test/unit/experiments/test_evaluate.py",
    }
)


#: Niceness of a worker while it runs a test that starts no ROS nodes (pure computation): the
#: other worker's nodes and their timed waits get the CPU first.
COMPUTE_NICE = 10


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = "cell-graphs" if _module(item) in GRAPH_MODULES else _module(item)
        item.add_marker(pytest.mark.xdist_group(group))


def _renice(value: int) -> None:
    """Every thread of this process to niceness `value` (Linux keeps one per thread; threads
    and processes started later inherit it). Lowering it needs root; otherwise it stays."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, value)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    timed = item.get_closest_marker("ros") is not None or _module(item) in GRAPH_MODULES
    _renice(0 if timed else COMPUTE_NICE)


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
