"""Session-wide test setup.

Every test session talks on its own random ROS_DOMAIN_ID, so parallel or leftover graphs on
the same machine cannot cross-talk; subprocesses inherit it. MuJoCo renders headless (EGL).
"""

import json
import os
import random
import subprocess
import sys

import pytest

# Domain ids 0-101 are valid for Fast DDS on Linux without port clashes; avoid 0 (the default
# every stray ROS process uses).
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
# Keep discovery on this machine: tests must never send DDS traffic to other hosts.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


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
