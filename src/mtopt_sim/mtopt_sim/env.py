"""Gymnasium env `MTOptCell` (id `mtopt_sim/MTOptCell-v0`): one MT-Opt cell, one episode at a
time, driven by the 6-D normalized MT-Opt action (`mtopt_core.action`).

Observation (a Dict):
  image           uint8 (S, S, 3): the policy camera, S = `EnvConfig.image_size` (64 default)
  gripper_closed  Discrete(2): 1 when the last gripper command was "close"
  gripper_height  float32 (1,): TCP height above the bin floor [m]
  object_detected Discrete(2): 1 when the gripper reports an object (closed, fingers stopped
                  before closing fully), as the real gripper's `GripperState.object_detected`

Each step: the translation and yaw are added to the commanded TCP pose, clamped to the
workspace box, solved with damped-least-squares IK (joint limits enforced) and executed as a
joint-space motion; then the gripper opens/closes if the command changed. The episode ends when
the action's terminate bit is set (terminated) or after `max_steps` (truncated).

As on the real cell, `reset()` starts a new episode from the current physical state: objects stay
where they are and a held object stays held, so a place episode can follow a successful pick.
A full scene reset is explicit: `respawn()` (new objects), `reset_bins()` (the hinge dump),
`reset(options={"respawn": True})`, or `reset(seed=...)`: a seed asks for a reproducible start,
so it respawns the scene from that seed (gymnasium's convention; also the first reset spawns).

Reset options: `respawn` (bool), `start` ("home", or an (x, y, z) TCP position the arm moves to
before the episode, via a safe height, like the real cell's pre-episode move), `start_yaw`
(rad), and `task` (a task name; the reward at the episode end is that task's oracle outcome).

At the episode end `info["oracle"]` holds the privileged success oracle for every task of the
registry (`info["oracle_detail"]` says which objects it saw); never feed it to the policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mtopt_core import action as action_mod
from mtopt_core.action import ActionSpec
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_sim.cell import CellConfig, SimCell
from mtopt_sim.oracle import OracleConfig, OracleResult, SuccessOracle
from mtopt_sim.scene import CAMERA_NAMES

ENV_ID = "mtopt_sim/MTOptCell-v0"


@dataclass(frozen=True)
class EnvConfig:
    """Settings of the `MTOptCell` env."""

    cell: CellConfig = field(default_factory=CellConfig)
    image_size: int = 64  # policy camera image side [px]
    policy_camera: str = "overhead"  # one of the three cell cameras
    max_steps: int = 20  # step limit of an episode (truncation)
    action_spec: ActionSpec = field(default_factory=ActionSpec)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    tasks_file: str | None = None  # None: the project's config/tasks.yaml
    #: Sim time to let released objects come to rest before grading an episode's end [s].
    final_settle_time: float = 0.3
    #: The commanded TCP pose snaps to the measured one when they differ by more than this [m]
    #: (e.g. the gripper was blocked by an object), so commands never wind up.
    reanchor_distance: float = 0.01
    safe_height: float = 0.22  # TCP height above the bin floor for pre-episode moves [m]
    render_size: int = 256  # side of `render()` images (render_mode "rgb_array")

    def __post_init__(self):
        if not 8 <= self.image_size <= 640:
            raise ValueError(f"image_size must be in 8..640, got {self.image_size}")
        if self.policy_camera not in CAMERA_NAMES:
            raise ValueError(
                f"policy_camera must be one of {CAMERA_NAMES}, got {self.policy_camera!r}"
            )
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


class MTOptCell(gym.Env):
    """One simulated MT-Opt cell as a gymnasium env (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        registry: TaskRegistry | None = None,
        **overrides: Any,
    ):
        if overrides:
            config = _with_overrides(config or EnvConfig(), overrides)
        self.config = config or EnvConfig()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.registry = registry or load_task_registry(self.config.tasks_file)
        self.oracle = SuccessOracle(self.registry, self.config.oracle)
        self.cell = SimCell(self.config.cell)
        size = self.config.image_size
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "gripper_closed": spaces.Discrete(2),
                "gripper_height": spaces.Box(-1.0, 2.0, (1,), np.float32),
                "object_detected": spaces.Discrete(2),
            }
        )
        self.action_space = spaces.Box(action_mod.LOW, action_mod.HIGH, dtype=np.float32)
        self._spawned = False
        self._steps = 0
        self._task: str | None = None
        self._episode_over = True
        self._cmd_pos = np.zeros(3)
        self._cmd_yaw = 0.0

    # ------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"respawn", "start", "start_yaw", "task"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}")
        task = options.get("task")
        if task is not None:
            self.registry.index(task)  # validates
        if seed is not None or options.get("respawn") or not self._spawned:
            self.respawn()  # from the freshly seeded env RNG when a seed was given
        start = options.get("start")
        if start is not None:
            self._move_to_start(start, options.get("start_yaw"))
        self._steps = 0
        self._task = task
        self._episode_over = False
        self._cmd_pos, self._cmd_yaw = self.cell.tcp_pose()
        return self._observation(), {"task": task}

    def step(self, action):
        if self._episode_over:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        spec = self.config.action_spec
        translation, dyaw, close, terminate = spec.to_physical(np.asarray(action))
        cell = self.cell
        measured, measured_yaw = cell.tcp_pose()
        if np.linalg.norm(self._cmd_pos - measured) > self.config.reanchor_distance:
            self._cmd_pos, self._cmd_yaw = measured, measured_yaw
        wanted = self._cmd_pos + translation
        target, yaw = cell.config.workspace.clip(wanted, self._cmd_yaw + dyaw, cell.floor_z)
        ik = cell.move_tcp(target, yaw)
        self._cmd_pos, self._cmd_yaw = target, yaw
        if close != cell.gripper_closed:
            cell.actuate_gripper(close)
        self._steps += 1
        truncated = (not terminate) and self._steps >= self.config.max_steps
        info: dict[str, Any] = {
            "step": self._steps,
            "ik_position_error": ik.position_error,
            "clamped": bool(np.any(np.abs(wanted - target) > 1e-9)),
        }
        reward = 0.0
        if terminate or truncated:
            self._episode_over = True
            cell.advance(self.config.final_settle_time)
            result = self.oracle.evaluate(cell)
            info["oracle"] = result.success
            info["oracle_detail"] = result
            info["task_names"] = self.registry.names
            if self._task is not None:
                reward = float(result.success[self._task])
        return self._observation(), reward, bool(terminate), bool(truncated), info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        size = self.config.render_size
        return self.cell.render(self.config.policy_camera, size, size)

    def close(self):
        self.cell.close()

    # ---------------------------------------------------------------- cell-level actions
    def respawn(self, seed: int | None = None) -> list[str]:
        """Full scene reset with a new random object set (seeded by `seed` or the env RNG)."""
        rng = np.random.default_rng(seed) if seed is not None else self.np_random
        names = self.cell.respawn(rng)
        self._spawned = True
        self._episode_over = True
        return names

    def reset_bins(self) -> dict[str, int]:
        """The bin reset (hinge dump of the left bin into the right one); returns the counts."""
        self._episode_over = True
        return self.cell.dump_left_bin()

    def render_sd_cameras(self, size: int = 128) -> dict[str, np.ndarray]:
        """Images (size x size) of the three success-detector cameras."""
        return self.cell.render_cameras(size)

    def evaluate_oracle(self) -> OracleResult:
        """The privileged oracle on the current state (ground truth; not a policy input)."""
        return self.oracle.evaluate(self.cell)

    # -------------------------------------------------------------------------- helpers
    def _move_to_start(self, start, start_yaw) -> None:
        cell = self.cell
        if isinstance(start, str):
            if start != "home":
                raise ValueError(f"reset option start must be 'home' or (x, y, z), got {start!r}")
            cell.go_home()
            return
        goal = np.asarray(start, dtype=float)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"reset option start must be 'home' or (x, y, z), got {start!r}")
        pos, yaw = cell.tcp_pose()
        yaw = yaw if start_yaw is None else float(start_yaw)
        safe_z = cell.floor_z + self.config.safe_height
        if np.linalg.norm(goal[:2] - pos[:2]) > 0.02:
            cell.move_tcp(np.array([pos[0], pos[1], max(pos[2], safe_z)]), yaw)
            cell.move_tcp(np.array([goal[0], goal[1], max(goal[2], safe_z)]), yaw)
        cell.move_tcp(goal, yaw)

    def _observation(self) -> dict[str, Any]:
        size = self.config.image_size
        return {
            "image": self.cell.render(self.config.policy_camera, size, size),
            "gripper_closed": int(self.cell.gripper_closed),
            "gripper_height": np.array([self.cell.gripper_height()], dtype=np.float32),
            "object_detected": int(self.cell.gripper_status().object_detected),
        }


def _with_overrides(config: EnvConfig, overrides: dict[str, Any]) -> EnvConfig:
    """`gym.make(ENV_ID, image_size=128, cell_id=3)`: top-level EnvConfig fields, plus
    `cell_id` as a shortcut for the cell config's."""
    overrides = dict(overrides)
    if "cell_id" in overrides:
        cell = dataclasses.replace(config.cell, cell_id=int(overrides.pop("cell_id")))
        overrides["cell"] = cell
    known = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown MTOptCell options {sorted(unknown)}; known: {sorted(known)}")
    return dataclasses.replace(config, **overrides)
