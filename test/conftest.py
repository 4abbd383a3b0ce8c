"""Session-wide test setup.

Every test session talks on its own random ROS_DOMAIN_ID, so parallel or leftover graphs on
the same machine cannot cross-talk; subprocesses inherit it. MuJoCo renders headless (EGL).
"""

import os
import random

# Domain ids 0-101 are valid for Fast DDS on Linux without port clashes; avoid 0 (the default
# every stray ROS process uses).
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
# Keep discovery on this machine: tests must never send DDS traffic to other hosts.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")
