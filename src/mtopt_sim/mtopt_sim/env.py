"""Gymnasium env `MTOptCell` (id `mtopt_sim/MTOptCell-v0`): one MT-Opt cell, one episode at a
time, driven by the 6-D normalized MT-Opt action (`mtopt_core.action`).

Observation (a Dict):
  image           uint8 (S, S, 3): the policy camera, S = `EnvConfig.image_size` (64 default):
                  the `policy_roi` crop of a `policy_frame_size` frame, resized to S
                  (`mtopt_core.images.policy_image`, as the policy node crops camera frames)
  gripper_closed  Discrete(2): 1 when the last gripper command was "close"
  gripper_height  float32 (1,): TCP height above the bin floor [m]
  object_detected Discrete(2): 1 when the gripper reports an object (closed, fingers stopped
                  before closing fully), as the real gripper's `GripperState.object_detected`

Episodes follow the episode protocol of every cell (`mtopt_policy.protocol`, settings in
`EnvConfig`), so the env's transitions and labels are those of the ROS cell's bags:

* `reset(options={"task": ..., "start": ...})` is the protocol's start: an episode of a
  lift-type task (a skill not in `place_skills`) opens the gripper first, releasing anything
  held; a place-type episode keeps holding what the previous lift picked. With a `start` pose,
  a gripper below `safe_height` then rises vertically to it and the arm moves to the start.
* Each step: the translation and yaw are added to the commanded TCP pose (unless both are below
  `min_translation_m` / `min_yaw_rad`), clamped to the workspace box, solved with
  damped-least-squares IK (joint limits enforced) and executed as a joint-space motion; then the
  gripper opens/closes if the action's bit differs from its commanded state.
* The episode ends when the action's terminate bit is set (terminated) or after `max_steps`
  (truncated); `info["ending"]` says which. Then the arm moves to the present pose (the arm
  controller's `present_q`; `present_before_grading`), `final_settle_time` passes, and the
  oracle grades there: `info["oracle"]` holds the privileged success of every task of the
  registry (`info["oracle_detail"]` says which objects it saw; never feed it to the policy).
  The last observation is taken there too, as a bag's final observation is.

As on the real cell, `reset()` starts a new episode from the current physical state: objects stay
where they are (and without a lift-type task a held object stays held). A full scene reset is
explicit: `respawn()` (new objects), `reset_bins()` (the hinge dump),
`reset(options={"respawn": True})`, or `reset(seed=...)`: a seed asks for a reproducible start,
so it respawns the scene from that seed (gymnasium's convention; also the first reset spawns).

Reset options: `respawn` (bool), `start` ("home", or an (x, y, z) TCP position the arm moves to
before the episode, via the safe height), `start_yaw` (rad), and `task` (a task name; the
reward at the episode end is that task's oracle outcome).

The protocol's pieces are public for in-process cells that drive the env the way the ROS policy
node drives a cell (`move_by`, `move_to`, `present`, `observation`, `cell.actuate_gripper`):
the same calls in the same order give the same physics as `reset` / `step`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mtopt_core import action as action_mod
from mtopt_core.action import ACTION_FRAMES, ActionSpec, to_base_frame
from mtopt_core.images import FULL_FRAME, check_roi, policy_image
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_policy.protocol import TERMINATED, TRUNCATED, EpisodeProtocol
from mtopt_sim.cell import CellConfig, SimCell
from mtopt_sim.oracle import OracleConfig, OracleResult, SuccessOracle
from mtopt_sim.scene import POLICY_CAMERA_NAMES

ENV_ID = "mtopt_sim/MTOptCell-v0"
#: The defaults of the episode protocol (the policy and collector nodes' parameters).
PROTOCOL = EpisodeProtocol()


@dataclass(frozen=True)
class EnvConfig:
    """Settings of the `MTOptCell` env."""

    cell: CellConfig = field(default_factory=CellConfig)
    image_size: int = 64  # policy camera image side [px]
    policy_camera: str = "overhead"  # a cell camera or the gripper's "wrist" camera
    #: Region of interest of the policy camera's frame: (x0, y0, x1, y1) in fractions of its
    #: width and height (the policy node's `policy_roi`); the full frame by default.
    policy_roi: tuple[float, ...] = FULL_FRAME
    #: Side of the square camera frame the ROI is cut from [px] (the camera's resolution; the
    #: sim cell node's camera_width/height for the same pixels through ROS); 0 = image_size.
    policy_frame_size: int = 0
    max_steps: int = PROTOCOL.max_steps  # step limit of an episode (truncation)
    action_spec: ActionSpec = field(default_factory=ActionSpec)
    #: Frame of the action's x/y translation: "base" or "tool" (the gripper's yaw; the policy
    #: node's `action_frame`, `mtopt_core.action.to_base_frame`).
    action_frame: str = "base"
    oracle: OracleConfig = field(default_factory=OracleConfig)
    tasks_file: str | None = None  # None: the project's config/tasks.yaml
    #: Sim time to let released objects come to rest before grading an episode's end [s].
    final_settle_time: float = PROTOCOL.settle_s
    #: After the last step, move to the present pose before grading (the collector's
    #: `present_before_grading`).
    present_before_grading: bool = PROTOCOL.present_before_grading
    #: Present pose A1..A7 [rad]; None: the cell's `RobotConfig.present_qpos`, the arm
    #: controller's `present_q` (config/iiwa.yaml).
    present_q: tuple[float, ...] | None = None
    #: Skills whose episodes keep holding at the start (others open the gripper first).
    place_skills: tuple[str, ...] = PROTOCOL.place_skills
    #: A step whose translation [m] and yaw [rad] are both below these does not move the arm.
    min_translation_m: float = PROTOCOL.min_translation_m
    min_yaw_rad: float = PROTOCOL.min_yaw_rad
    #: The commanded TCP pose snaps to the measured one when they differ by more than this [m]
    #: (e.g. the gripper was blocked by an object), so commands never wind up.
    reanchor_distance: float = 0.01
    safe_height: float = PROTOCOL.safe_height  # pre-episode moves' height above the floor [m]
    render_size: int = 256  # side of `render()` images (render_mode "rgb_array")

    def __post_init__(self):
        if not 8 <= self.image_size <= 640:
            raise ValueError(f"image_size must be in 8..640, got {self.image_size}")
        object.__setattr__(self, "policy_roi", check_roi(self.policy_roi, "policy_roi"))
        if self.policy_frame_size != 0 and not 8 <= self.policy_frame_size <= 640:
            raise ValueError(
                f"policy_frame_size must be 0 or in 8..640, got {self.policy_frame_size}"
            )
        if self.action_frame not in ACTION_FRAMES:
            raise ValueError(
                f"action_frame must be one of {ACTION_FRAMES}, got {self.action_frame!r}"
            )
        if self.policy_camera not in POLICY_CAMERA_NAMES:
            raise ValueError(
                f"policy_camera must be one of {POLICY_CAMERA_NAMES}, got {self.policy_camera!r}"
            )
        if self.present_q is not None and (
            len(self.present_q) != 7 or not np.all(np.isfinite(self.present_q))
        ):
            raise ValueError(f"present_q must be 7 finite joint angles, got {self.present_q}")
        _ = self.protocol  # validates max_steps, safe_height, ...

    @property
    def protocol(self) -> EpisodeProtocol:
        """The episode protocol these settings describe."""
        return EpisodeProtocol(
            max_steps=self.max_steps,
            safe_height=self.safe_height,
            place_skills=tuple(self.place_skills),
            min_translation_m=self.min_translation_m,
            min_yaw_rad=self.min_yaw_rad,
            present_before_grading=self.present_before_grading,
            settle_s=self.final_settle_time,
        )


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
        self.protocol = self.config.protocol
        self.oracle = SuccessOracle(self.registry, self.config.oracle)
        self.cell = SimCell(self.config.cell)
        self.present_q = np.array(
            self.cell.present_qpos if self.config.present_q is None else self.config.present_q
        )
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
        # The yaw measured at the end of the last arm move: a tool-frame step turns by it, as
        # the policy's runner turns by the yaw its last move reported.
        self._move_yaw = 0.0

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
        start = options.get("start")
        if start is not None and not isinstance(start, str):
            start = _start_position(start)
        elif start not in (None, "home"):
            raise ValueError(f"reset option start must be 'home' or (x, y, z), got {start!r}")
        if seed is not None or options.get("respawn") or not self._spawned:
            self.respawn()  # from the freshly seeded env RNG when a seed was given
        self._start(task, start, options.get("start_yaw"))
        self._steps = 0
        self._task = task
        self._episode_over = False
        self._cmd_pos, self._cmd_yaw = self.cell.tcp_pose()
        self._move_yaw = self._cmd_yaw
        return self._observation(), {"task": task}

    def step(self, action):
        if self._episode_over:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        spec = self.config.action_spec
        translation, dyaw, close, terminate = spec.to_physical(np.asarray(action))
        cell, protocol = self.cell, self.protocol
        info: dict[str, Any] = {"step": self._steps + 1, "moved": False}
        if protocol.moves_arm(translation, dyaw):
            translation = to_base_frame(translation, self._move_yaw, self.config.action_frame)
            info.update(self.move_by(translation, dyaw), moved=True)
        if close != cell.gripper_closed:
            cell.actuate_gripper(close)
        self._steps += 1
        ending = protocol.ending(self._steps, terminate)
        reward = 0.0
        if ending:
            self._episode_over = True
            info["ending"] = ending
            if protocol.present_before_grading:
                self.present()
            cell.advance(protocol.settle_s)
            result = self.oracle.evaluate(cell)
            info["oracle"] = result.success
            info["oracle_detail"] = result
            info["task_names"] = self.registry.names
            if self._task is not None:
                reward = float(result.success[self._task])
        terminated, truncated = ending == TERMINATED, ending == TRUNCATED
        return self._observation(), reward, terminated, truncated, info

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

    # ------------------------------------------------- the protocol's moves (also for ports)
    def move_by(self, translation, dyaw: float) -> dict[str, Any]:
        """One step's arm move (a policy node's MODE_DELTA move): `translation` [m] and `dyaw`
        [rad] added to the commanded TCP pose (which snaps to the measured one when they differ
        by more than `reanchor_distance`), clamped to the workspace box. Returns the step info
        `ik_position_error` and `clamped`."""
        cell = self.cell
        measured, measured_yaw = cell.tcp_pose()
        if np.linalg.norm(self._cmd_pos - measured) > self.config.reanchor_distance:
            self._cmd_pos, self._cmd_yaw = measured, measured_yaw
        wanted = self._cmd_pos + np.asarray(translation, dtype=float)
        target, yaw = cell.config.workspace.clip(wanted, self._cmd_yaw + dyaw, cell.floor_z)
        ik = cell.move_tcp(target, yaw)
        self._cmd_pos, self._cmd_yaw = target, yaw
        self._move_yaw = cell.tcp_pose()[1]
        return {
            "ik_position_error": ik.position_error,
            "clamped": bool(np.any(np.abs(wanted - target) > 1e-9)),
        }

    def move_to(self, position, yaw: float | None = None) -> None:
        """The start move (a policy node's MODE_ABSOLUTE move) to a TCP `position` [m] and
        `yaw` [rad] (None: keep it): across at the safe height when it is more than 2 cm away
        sideways, then straight to the position. The commanded pose becomes the measured one."""
        cell = self.cell
        goal = _start_position(position)
        pos, current_yaw = cell.tcp_pose()
        yaw = current_yaw if yaw is None else float(yaw)
        safe_z = cell.floor_z + self.protocol.safe_height
        if np.linalg.norm(goal[:2] - pos[:2]) > 0.02:
            cell.move_tcp(np.array([goal[0], goal[1], max(goal[2], safe_z)]), yaw)
        cell.move_tcp(goal, yaw)
        self._cmd_pos, self._cmd_yaw = cell.tcp_pose()
        self._move_yaw = self._cmd_yaw

    def present(self) -> None:
        """The arm to the present pose (`present_q`), the gripper as it is."""
        self.cell.move_joints(self.present_q)

    def observation(self) -> dict[str, Any]:
        """The observation of the current state (what `reset` and `step` return)."""
        return self._observation()

    # -------------------------------------------------------------------------- helpers
    def _start(self, task: str | None, start, start_yaw) -> None:
        """The protocol's start: open the gripper for a lift-type task, then (with a start
        pose) rise to the safe height if low and move to the start."""
        cell, protocol = self.cell, self.protocol
        # The height as observed (float32) before anything moves, as the policy node sees it.
        height = float(np.float32(cell.gripper_height()))
        lift = task is not None and protocol.opens_gripper_first(self.registry.skill_of(task))
        if lift and cell.gripper_closed:
            cell.actuate_gripper(close=False)
        if start is None:
            return
        if isinstance(start, str):
            cell.go_home()
            return
        rise = protocol.rise(height)
        if rise > 0:
            self.move_by((0.0, 0.0, rise), 0.0)
        self.move_to(start, start_yaw)

    def policy_frame(self) -> np.ndarray:
        """The policy camera's full frame (`policy_frame_size` square) the image is cut from."""
        cfg = self.config
        side = cfg.policy_frame_size or cfg.image_size
        return self.cell.render(cfg.policy_camera, side, side)

    def _observation(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "image": policy_image(self.policy_frame(), cfg.image_size, cfg.policy_roi),
            "gripper_closed": int(self.cell.gripper_closed),
            "gripper_height": np.array([self.cell.gripper_height()], dtype=np.float32),
            "object_detected": int(self.cell.gripper_status().object_detected),
        }


def _start_position(start) -> np.ndarray:
    goal = np.asarray(start, dtype=float)
    if goal.shape != (3,) or not np.all(np.isfinite(goal)):
        raise ValueError(f"reset option start must be 'home' or (x, y, z), got {start!r}")
    return goal


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
