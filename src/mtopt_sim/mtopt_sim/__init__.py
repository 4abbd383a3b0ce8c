"""mtopt_sim: the simulated MT-Opt robot cell (MuJoCo).

Importing the package registers the gymnasium env `mtopt_sim/MTOptCell-v0` (lazily: MuJoCo is
imported when the env is made). Headless rendering defaults to EGL.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as _gym

ENV_ID = "mtopt_sim/MTOptCell-v0"

if ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="mtopt_sim.env:MTOptCell")
