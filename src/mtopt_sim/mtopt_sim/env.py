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
  a gripper below `safe_height` then rises vertically to it and the arm moves to the start
  (at `start_speed_mps`, as the policy node times its pre-episode moves).
* Each step: the translation and yaw (unless both are below `min_translation_m` /
  `min_yaw_rad`) are one move of the arm controller, as a cell's policy node sends it: added to
  the measured TCP pose, clamped into the free space, a straight line in `step_duration_s`,
  followed until reached or stalled, and a stalled arm is held where it stopped
  (`mtopt_sim.controller.SimController`, the `controller` parameters); then the gripper
  opens/closes if the action's bit differs from its commanded state, and the controller waits
  until the fingers reach their target or stall on an object.
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
node drives a cell (`controller.move`, `move_by`, `move_to`, `present`, `actuate_gripper`,
`observation`): the same calls in the same order give the same physics as `reset` / `step`.
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
from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.kinematics import wrap_angle
from mtopt_policy.config import PolicyConfig
from mtopt_policy.protocol import TERMINATED, TRUNCATED, EpisodeProtocol
from mtopt_sim.cell import CellConfig, SimCell
from mtopt_sim.controller import MODE_ABSOLUTE, MODE_DELTA, SimController
from mtopt_sim.oracle import OracleConfig, OracleResult, SuccessOracle
from mtopt_sim.scene import POLICY_CAMERA_NAMES
from mtopt_sim.sim_params import SIM_POLICY, sim_controller_config

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
    #: The arm controller's parameters (a simulated cell's: config/iiwa.yaml + sim_cell.yaml).
    controller: IiwaControllerConfig = field(default_factory=sim_controller_config)
    #: Motion time of a step [s] and speed of the pre-episode moves [m/s], [rad/s] (the policy
    #: node's `step_duration_s`, `start_speed_mps`, `start_yaw_speed_rps`; 0 = the controller's
    #: own timing).
    step_duration_s: float = SIM_POLICY["step_duration_s"]
    start_speed_mps: float = SIM_POLICY["start_speed_mps"]
    start_yaw_speed_rps: float = PolicyConfig.start_yaw_speed_rps
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
        for name in ("step_duration_s", "start_speed_mps"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (np.isfinite(self.start_yaw_speed_rps) and self.start_yaw_speed_rps > 0):
            raise ValueError(f"start_yaw_speed_rps must be > 0, got {self.start_yaw_speed_rps}")
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
        self.controller = SimController(self.cell, self.config.controller)
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
        self._move_yaw = self.cell.tcp_pose()[1]
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
            self.actuate_gripper(close)
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
    def move_by(self, translation, dyaw: float, duration: float | None = None) -> dict[str, Any]:
        """One step's arm move (a policy node's MODE_DELTA move): `translation` [m] (base frame)
        and `dyaw` [rad] added to the measured TCP pose in `duration` [s] (None: the step's
        `step_duration_s`). Returns the step info `move_outcome` (REACHED, CLAMPED, BLOCKED,
        ...) and `clamped`."""
        if duration is None:
            duration = self.config.step_duration_s
        report = self.controller.move(MODE_DELTA, translation, dyaw, duration)
        self._move_yaw = report.yaw
        return {"move_outcome": report.outcome.name, "clamped": report.clamped}

    def move_to(self, position, yaw: float | None = None, rise: float = 0.0) -> None:
        """The pre-episode moves of a policy node (`EpisodeRunner`'s start): a vertical move by
        `rise` [m] (with a start speed it always runs: it tells where the gripper is), then a
        MODE_ABSOLUTE move to the TCP `position` [m] and `yaw` [rad] (None: keep it), timed by
        `start_speed_mps` and `start_yaw_speed_rps`; the controller routes it over the walls."""
        cfg = self.config
        goal = _start_position(position)
        speed = cfg.start_speed_mps
        where, where_yaw = self.cell.tcp_pose()
        if rise > 0 or speed > 0:
            rise_time = max(rise / speed, 0.05) if speed > 0 else 0.0
            probe = self.controller.move(MODE_DELTA, (0.0, 0.0, rise), 0.0, rise_time)
            where, where_yaw = probe.position, probe.yaw
        yaw = where_yaw if yaw is None else float(yaw)
        duration = 0.0
        if speed > 0:
            distance = float(np.linalg.norm(goal - where))
            turn = abs(wrap_angle(yaw - where_yaw))
            duration = max(0.1, distance / speed, turn / cfg.start_yaw_speed_rps)
        self._move_yaw = self.controller.move(MODE_ABSOLUTE, goal, yaw, duration).yaw

    def actuate_gripper(self, close: bool) -> str:
        """A gripper command through the controller; its outcome (REACHED, STALLED, TIMEOUT)."""
        return self.controller.gripper(close).name

    def present(self) -> None:
        """The arm to the present pose (`present_q`) as iiwa/present does it (straight up out
        of the bin first), the gripper as it is."""
        self.controller.joint_move(self.present_q)

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
            self.actuate_gripper(close=False)
        if start is None:
            return
        if isinstance(start, str):
            self.controller.joint_move(cell.home_qpos)
            return
        self.move_to(start, start_yaw, rise=protocol.rise(height))

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
