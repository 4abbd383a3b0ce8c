"""`SimCell`: the simulated MT-Opt cell as a plain class (physics, servos, queries, rendering).

Both faces of the simulator use it: the gymnasium env (`mtopt_sim.env`, blocking Cartesian
steps) and `sim_cell_node` (ROS topics; joint trajectories, gripper and bin-motor commands
executed as sim time advances). Nothing here knows about ROS or gymnasium.

Low-level commands (what a real cell's drivers accept) are latched and executed by
`step_physics`: a joint trajectory for the arm, a target opening and force for the gripper, and
a target angle and speed for the bin hinge motor. Blocking helpers (`move_tcp`, `move_joints`,
`actuate_gripper`, `dump_left_bin`) command and then advance time until the motion is done.

Rendering uses `mujoco.Renderer` objects created lazily on first use; an EGL context is bound to
the thread that created it, so create and use a `SimCell`'s renderers in one thread, and never
fork a process after rendering (use the multiprocessing 'spawn' start method).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from mtopt_sim import objects as objects_mod
from mtopt_sim import robot as robot_mod
from mtopt_sim import scene as scene_mod
from mtopt_sim.ik import DlsIk, IkConfig, IkResult, top_down_rotation, yaw_of

HIDDEN_GEOM_GROUP = 5  # parked objects are moved to this group; renderers hide it


@dataclass(frozen=True)
class WorkspaceBox:
    """Limits of the commanded TCP pose (robot base frame)."""

    x: tuple[float, float] = (0.42, 0.70)
    y: tuple[float, float] = (-0.30, 0.30)
    #: z limits relative to the bin floor [m]; the lower one keeps the fingertips just above it.
    height: tuple[float, float] = (0.025, 0.40)
    yaw: tuple[float, float] = (-math.pi / 2, math.pi / 2)

    def clip(self, position: np.ndarray, yaw: float, floor_z: float) -> tuple[np.ndarray, float]:
        lo = np.array([self.x[0], self.y[0], floor_z + self.height[0]])
        hi = np.array([self.x[1], self.y[1], floor_z + self.height[1]])
        return np.clip(position, lo, hi), float(np.clip(yaw, *self.yaw))


@dataclass(frozen=True)
class CellConfig:
    """Everything that defines a simulated cell. Times are sim seconds."""

    cell_id: int = 0  # seeds the look (lighting, colours, camera jitter)
    scene: scene_mod.SceneConfig = field(default_factory=scene_mod.SceneConfig)
    workspace: WorkspaceBox = field(default_factory=WorkspaceBox)
    ik: IkConfig = field(default_factory=IkConfig)
    min_objects: int = 7  # objects spawned per scene respawn (inclusive range)
    max_objects: int = 9
    #: Spawn one object of every category first (the seed's evaluation scene), then extras.
    one_per_category: bool = True
    #: Plate yaw range at respawn [rad] (the plate "could be oriented arbitrarily") and the
    #: largest shift of its centre in the left bin [m].
    plate_yaw_range: float = math.pi
    plate_shift: float = 0.0
    spawn_settle_time: float = 1.2
    cartesian_speed: float = 0.25  # m/s of a blocking TCP move
    yaw_speed: float = 1.5  # rad/s of a blocking TCP move
    min_move_time: float = 0.12
    joint_speed: float = 1.2  # rad/s of the largest joint in a blocking joint move
    settle_time: float = 0.04  # after a blocking arm move
    gripper_min_time: float = 0.08
    gripper_max_time: float = 0.5
    #: Bin reset: hinge angle to tilt to, speed, hold time (with a shake), and settle time.
    dump_angle: float = 2.65
    dump_speed: float = 2.5
    dump_shakes: int = 3
    dump_shake_amplitude: float = 0.35
    dump_hold_time: float = 0.4
    dump_settle_time: float = 0.6
    hinge_default_speed: float = 2.0  # BinMotorCommand.max_velocity <= 0 selects it
    #: An object whose lowest body origin is this far below the table top is lost.
    lost_below_table: float = 0.05

    def __post_init__(self):
        if self.cell_id < 0:
            raise ValueError(f"cell_id must be >= 0, got {self.cell_id}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )


@dataclass
class _Trajectory:
    """Piecewise-linear joint trajectory in absolute sim time."""

    times: np.ndarray  # (k,) increasing
    positions: np.ndarray  # (k, 7)

    def __post_init__(self):
        # Sampled every physics step: Python floats and bisect are several times faster here
        # than numpy scalars and searchsorted (the same IEEE arithmetic).
        self._times = [float(t) for t in self.times]

    def sample(self, t: float) -> np.ndarray:
        times = self._times
        if t <= times[0]:
            return self.positions[0]
        if t >= times[-1]:
            return self.positions[-1]
        i = bisect.bisect_right(times, t)
        t0, t1 = times[i - 1], times[i]
        a = (t - t0) / (t1 - t0)
        return (1 - a) * self.positions[i - 1] + a * self.positions[i]

    def done(self, t: float) -> bool:
        return t >= self.times[-1]


@dataclass(frozen=True)
class GripperStatus:
    opening: float  # m between the pads
    effort: float  # N (mean finger servo force)
    closed: bool  # the last command was a close command
    object_detected: bool  # closed but stopped before fully closed


class SimCell:
    """One simulated MT-Opt cell: model, data, servos and the queries the rest needs."""

    def __init__(self, config: CellConfig | None = None, seed: int | None = None):
        self.config = config or CellConfig()
        self.scene_config = self.config.scene
        self.variants = objects_mod.object_catalog()
        self.spec = scene_mod.build_scene_spec(
            self.config.cell_id, self.scene_config, self.variants
        )
        self.model = self.spec.compile()
        self.data = mujoco.MjData(self.model)
        self.rng = np.random.default_rng(seed)
        self._index_model()
        self.ik = DlsIk(
            self.model,
            scene_mod.ROBOT_PREFIX + robot_mod.TCP_SITE,
            self.arm_joint_names,
            self.home_qpos,
            self.config.ik,
        )
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._watcher = None
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[HIDDEN_GEOM_GROUP] = 0
        self.active_objects: list[int] = []  # indices into self.variants
        self._base_look: dict[str, np.ndarray] | None = None  # saved by vary_look
        self._park_all()
        self.go_home(instant=True)

    # ----------------------------------------------------------------------------- model
    def _index_model(self) -> None:
        m = self.model
        prefix = scene_mod.ROBOT_PREFIX
        self.arm_joint_names = tuple(prefix + n for n in robot_mod.URDF_JOINT_NAMES)
        arm_joints = [m.joint(n).id for n in self.arm_joint_names]
        self.arm_qpos_adr = np.array([m.jnt_qposadr[j] for j in arm_joints])
        self.arm_dof_adr = np.array([m.jnt_dofadr[j] for j in arm_joints])
        self.arm_range = np.array([m.jnt_range[j] for j in arm_joints])
        self.arm_act = np.array([m.actuator(prefix + n).id for n in robot_mod.ARM_ACTUATOR_NAMES])
        fingers = [m.joint(prefix + n).id for n in robot_mod.FINGER_JOINT_NAMES]
        self.finger_qpos_adr = np.array([m.jnt_qposadr[j] for j in fingers])
        self.finger_dof_adr = np.array([m.jnt_dofadr[j] for j in fingers])
        self.finger_act = np.array(
            [m.actuator(prefix + n).id for n in robot_mod.FINGER_ACTUATOR_NAMES]
        )
        hinge = m.joint(scene_mod.HINGE_JOINT).id
        self.hinge_qpos_adr = int(m.jnt_qposadr[hinge])
        self.hinge_dof_adr = int(m.jnt_dofadr[hinge])
        self.hinge_range = m.jnt_range[hinge].copy()
        self.hinge_act = m.actuator(scene_mod.HINGE_ACTUATOR).id
        self.tcp_site = m.site(prefix + robot_mod.TCP_SITE).id
        self.left_bin_body = m.body(scene_mod.LEFT_BIN_BODY).id
        self.plate_body = m.body(scene_mod.PLATE_BODY).id
        self.plate_geoms = frozenset(
            g for g in range(m.ngeom) if m.geom_bodyid[g] == self.plate_body
        )
        self.finger_left_geoms = frozenset(
            m.geom(prefix + n).id for n in robot_mod.FINGER_GEOM_NAMES if "left" in n
        )
        self.finger_right_geoms = frozenset(
            m.geom(prefix + n).id for n in robot_mod.FINGER_GEOM_NAMES if "right" in n
        )
        self.object_body = np.array([m.body(objects_mod.body_name(v)).id for v in self.variants])
        self.object_qpos_adr = np.array(
            [m.jnt_qposadr[m.body_jntadr[b]] for b in self.object_body]
        )
        self.object_dof_adr = np.array([m.jnt_dofadr[m.body_jntadr[b]] for b in self.object_body])
        self.object_geoms = [np.flatnonzero(m.geom_bodyid == b) for b in self.object_body]
        # body id -> object index (or -1)
        self._body_to_object = np.full(m.nbody, -1)
        self._body_to_object[self.object_body] = np.arange(len(self.variants))
        self._plate_home_pos = m.body_pos[self.plate_body].copy()
        self._plate_home_quat = m.body_quat[self.plate_body].copy()
        self.home_qpos = np.array(self.config.scene.robot.home_qpos, dtype=float)
        self.present_qpos = np.array(self.config.scene.robot.present_qpos, dtype=float)
        self.grip_force = self.config.scene.robot.default_grip_force

    @property
    def floor_z(self) -> float:
        return self.scene_config.floor_z

    @property
    def time(self) -> float:
        return float(self.data.time)

    # -------------------------------------------------------------------------- commands
    def set_joint_trajectory(
        self, times_from_now, positions, limits=None, start_tolerance: float = 0.0
    ) -> None:
        """Follow a piecewise-linear joint trajectory starting now.

        `times_from_now` (k,) increasing, >= 0 [s]; `positions` (k, 7) arm joint targets. The
        motion starts from the current commanded position; targets are clamped to the limits.
        With `limits` (an `mtopt_iiwa.safety.JointLimits`, as the ROS face passes), a
        trajectory beyond the joint position, velocity or acceleration limits, starting from
        the commanded position (`start_tolerance` [rad] of it excused: servo lag), raises
        `JointLimitError` (a ValueError) and the arm keeps what it was doing.
        """
        times = np.asarray(times_from_now, dtype=float).reshape(-1)
        pos = np.asarray(positions, dtype=float).reshape(len(times), 7)
        if len(times) == 0:
            raise ValueError("empty trajectory")
        if np.any(np.diff(times) <= 0) or times[0] < 0:
            raise ValueError("trajectory times must be >= 0 and strictly increasing")
        if not np.all(np.isfinite(pos)):
            raise ValueError("trajectory positions must be finite")
        start = self.data.ctrl[self.arm_act].copy()
        if limits is not None:
            limits.check(times, pos, start=start, start_tolerance=start_tolerance)
        pos = np.clip(pos, self.arm_range[:, 0], self.arm_range[:, 1])
        now = self.time
        if times[0] > 0:
            times = np.concatenate([[0.0], times])
            pos = np.vstack([start, pos])
        self._trajectory = _Trajectory(now + times, pos)

    def set_gripper(self, opening: float, max_effort: float = 0.0) -> None:
        """Command the pad opening [m] (0 = closed) and grip force [N] (<= 0: default)."""
        if not math.isfinite(opening) or not math.isfinite(max_effort):
            raise ValueError("gripper opening and effort must be finite")
        robot = self.config.scene.robot
        force = (
            robot.default_grip_force if max_effort <= 0 else min(max_effort, robot.max_grip_force)
        )
        opening = float(np.clip(opening, 0.0, robot_mod.MAX_OPENING))
        self.grip_force = force
        self.model.actuator_forcerange[self.finger_act] = [-force, force]
        self.data.ctrl[self.finger_act] = opening / 2
        self._gripper_closed_cmd = opening < robot_mod.MAX_OPENING / 2

    def open_gripper(self) -> None:
        self.set_gripper(robot_mod.MAX_OPENING)

    def close_gripper(self) -> None:
        self.set_gripper(0.0)

    def set_bin_motor(self, angle: float, max_velocity: float = 0.0) -> None:
        """Drive the left-bin hinge to `angle` [rad] at up to `max_velocity` [rad/s]."""
        if not math.isfinite(angle) or not math.isfinite(max_velocity):
            raise ValueError("bin motor angle and velocity must be finite")
        self._hinge_target = float(np.clip(angle, *self.hinge_range))
        self._hinge_speed = (
            self.config.hinge_default_speed if max_velocity <= 0 else float(max_velocity)
        )

    # --------------------------------------------------------------------------- physics
    def watch(self, callback, every_s: float) -> None:
        """Call `callback(cell)` every `every_s` sim seconds while physics runs (None: stop).

        For recording (e.g. GIF frames of blocking moves); it runs in the stepping thread."""
        self._watcher = callback
        self._watch_every = max(1, int(round(every_s / self.model.opt.timestep)))
        self._watch_count = 0

    def step_physics(self, n: int = 1) -> None:
        """Advance `n` physics steps, executing the latched commands."""
        m, d = self.model, self.data
        dt = m.opt.timestep
        for _ in range(n):
            if self._watcher is not None:
                self._watch_count += 1
                if self._watch_count >= self._watch_every:
                    self._watch_count = 0
                    self._watcher(self)
            d.ctrl[self.arm_act] = self._trajectory.sample(d.time + dt)
            setpoint = float(d.ctrl[self.hinge_act])
            if setpoint != self._hinge_target:  # (Python floats: np.clip per step is slow)
                max_delta = self._hinge_speed * dt
                delta = min(max(self._hinge_target - setpoint, -max_delta), max_delta)
                d.ctrl[self.hinge_act] = setpoint + delta
            mujoco.mj_step(m, d)

    def advance(self, duration: float) -> None:
        """Advance sim time by `duration` seconds (rounded to whole physics steps)."""
        self.step_physics(max(0, int(round(duration / self.model.opt.timestep))))

    @property
    def arm_busy(self) -> bool:
        return not self._trajectory.done(self.time)

    @property
    def hinge_busy(self) -> bool:
        return abs(self.data.ctrl[self.hinge_act] - self._hinge_target) > 1e-9

    # -------------------------------------------------------------------------- queries
    def arm_qpos(self) -> np.ndarray:
        return self.data.qpos[self.arm_qpos_adr].copy()

    def arm_qvel(self) -> np.ndarray:
        return self.data.qvel[self.arm_dof_adr].copy()

    def arm_effort(self) -> np.ndarray:
        return self.data.actuator_force[self.arm_act].copy()

    def tcp_pose(self) -> tuple[np.ndarray, float]:
        """Measured TCP position (3,) and yaw [rad]."""
        pos = self.data.site_xpos[self.tcp_site].copy()
        return pos, yaw_of(self.data.site_xmat[self.tcp_site].reshape(3, 3))

    def gripper_height(self) -> float:
        """TCP height above the bin floor [m] (both bins' floors are at the same height)."""
        return float(self.data.site_xpos[self.tcp_site][2] - self.floor_z)

    def gripper_status(self) -> GripperStatus:
        fingers = self.data.qpos[self.finger_qpos_adr]
        opening = robot_mod.gripper_opening(fingers)
        speed = float(np.max(np.abs(self.data.qvel[self.finger_dof_adr])))
        effort = float(np.mean(np.abs(self.data.actuator_force[self.finger_act])))
        closed = self._gripper_closed_cmd
        detected = closed and opening > 0.004 and speed < 0.01
        return GripperStatus(opening, effort, closed, detected)

    @property
    def gripper_closed(self) -> bool:
        return self._gripper_closed_cmd

    def hinge_angle(self) -> float:
        return float(self.data.qpos[self.hinge_qpos_adr])

    def hinge_velocity(self) -> float:
        return float(self.data.qvel[self.hinge_dof_adr])

    def object_position(self, index: int) -> np.ndarray:
        return self.data.xpos[self.object_body[index]].copy()

    def object_speed(self, index: int) -> float:
        adr = self.object_dof_adr[index]
        return float(np.linalg.norm(self.data.qvel[adr : adr + 3]))

    def contacts_by_object(self) -> dict[int, set[str]]:
        """Per active object index: which of 'finger_left', 'finger_right', 'plate' it touches."""
        d = self.data
        result: dict[int, set[str]] = {i: set() for i in self.active_objects}
        if d.ncon == 0:
            return result
        geoms = d.contact.geom[: d.ncon]
        bodies = self.model.geom_bodyid[geoms]
        objs = self._body_to_object[bodies]
        for k in range(d.ncon):
            for side in (0, 1):
                obj = objs[k, side]
                if obj < 0 or obj not in result:
                    continue
                other = int(geoms[k, 1 - side])
                if other in self.finger_left_geoms:
                    result[obj].add("finger_left")
                elif other in self.finger_right_geoms:
                    result[obj].add("finger_right")
                elif other in self.plate_geoms:
                    result[obj].add("plate")
        return result

    def held_objects(self) -> list[int]:
        """Active objects touching both fingers while the gripper is commanded closed."""
        if not self._gripper_closed_cmd:
            return []
        return [
            i
            for i, touching in self.contacts_by_object().items()
            if {"finger_left", "finger_right"} <= touching
        ]

    def plate_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """World position and rotation (3x3) of the plate (sections are in this frame)."""
        return (
            self.data.xpos[self.plate_body].copy(),
            self.data.xmat[self.plate_body].reshape(3, 3).copy(),
        )

    def plate_section_of(self, world_pos: np.ndarray) -> str | None:
        """The plate section above which `world_pos` lies, or None if outside the plate."""
        origin, rot = self.plate_frame()
        local = rot.T @ (np.asarray(world_pos) - origin)
        if math.hypot(local[0], local[1]) > self.scene_config.plate_radius:
            return None
        if local[0] < 0:
            return "bottom"
        return "top-left" if local[1] >= 0 else "top-right"

    def object_region(self, index: int) -> str:
        """Where an object is: parked, held, right_bin, left_bin, table or lost."""
        if index not in self.active_objects:
            return "parked"
        if index in self.held_objects():
            return "held"
        pos = self.object_position(index)
        cfg = self.scene_config
        top = cfg.rim_z + 0.06
        right, half = cfg.bin_center("right"), cfg.bin_half("right") + 0.005
        if (
            abs(pos[0] - right[0]) <= half[0]
            and abs(pos[1] - right[1]) <= half[1]
            and cfg.floor_z - 0.01 <= pos[2] <= top
        ):
            return "right_bin"
        # Left bin: test in the bin's (possibly tilted) frame, relative to its level pose.
        bin_pos = self.data.xpos[self.left_bin_body]
        bin_rot = self.data.xmat[self.left_bin_body].reshape(3, 3)
        local = bin_rot.T @ (pos - bin_pos) + cfg.hinge_point
        left, half = cfg.bin_center("left"), cfg.bin_half("left") + 0.005
        if (
            abs(local[0] - left[0]) <= half[0]
            and abs(local[1] - left[1]) <= half[1]
            and cfg.floor_z - 0.01 <= local[2] <= top
        ):
            return "left_bin"
        tx, ty = cfg.table_half
        on_table = abs(pos[0] - cfg.table_center_x) <= tx and abs(pos[1]) <= ty
        if on_table and pos[2] >= -self.config.lost_below_table:
            return "table"
        return "lost"

    def count_objects(self) -> dict[str, int]:
        """How many active objects are in each region."""
        counts = dict.fromkeys(("held", "right_bin", "left_bin", "table", "lost"), 0)
        for i in self.active_objects:
            counts[self.object_region(i)] += 1
        return counts

    # ------------------------------------------------------------------------ blocking moves
    def solve_ik(self, position: np.ndarray, yaw: float) -> IkResult:
        """IK for a top-down TCP pose, warm-started from the current commanded joints."""
        return self.ik.solve(
            self.data.ctrl[self.arm_act].copy(),
            np.asarray(position, float),
            top_down_rotation(yaw),
        )

    def move_joints(self, qpos: np.ndarray, duration: float | None = None) -> None:
        """Blocking joint-space move to `qpos` (linear in joint space), then settle."""
        start = self.data.ctrl[self.arm_act].copy()
        qpos = np.clip(np.asarray(qpos, float), self.arm_range[:, 0], self.arm_range[:, 1])
        if duration is None:
            duration = max(
                self.config.min_move_time,
                float(np.max(np.abs(qpos - start))) / self.config.joint_speed,
            )
        self.set_joint_trajectory([duration], [qpos])
        self.advance(duration + self.config.settle_time)

    def move_tcp(self, position: np.ndarray, yaw: float) -> IkResult:
        """Blocking Cartesian move of the TCP to (position, yaw), after workspace clipping."""
        position, yaw = self.config.workspace.clip(np.asarray(position, float), yaw, self.floor_z)
        current, current_yaw = self.tcp_pose()
        result = self.solve_ik(position, yaw)
        cfg = self.config
        duration = max(
            cfg.min_move_time,
            float(np.linalg.norm(position - current)) / cfg.cartesian_speed,
            abs(yaw - current_yaw) / cfg.yaw_speed,
        )
        self.set_joint_trajectory([duration], [result.qpos])
        self.advance(duration + cfg.settle_time)
        return result

    def actuate_gripper(self, close: bool) -> None:
        """Blocking open/close: command, then advance until the fingers stop (bounded)."""
        if close:
            self.close_gripper()
        else:
            self.open_gripper()
        cfg = self.config
        dt = self.model.opt.timestep
        self.advance(cfg.gripper_min_time)
        waited = cfg.gripper_min_time
        chunk = 10
        while waited < cfg.gripper_max_time:
            self.step_physics(chunk)
            waited += chunk * dt
            if np.max(np.abs(self.data.qvel[self.finger_dof_adr])) < 0.005:
                break

    def go_home(self, instant: bool = False) -> None:
        """Arm to the home posture (gripper state unchanged). `instant` teleports it."""
        if instant:
            d = self.data
            d.qpos[self.arm_qpos_adr] = self.home_qpos
            d.qvel[self.arm_dof_adr] = 0
            d.ctrl[self.arm_act] = self.home_qpos
            self._trajectory = _Trajectory(np.array([d.time]), self.home_qpos[None, :].copy())
            if not hasattr(self, "_gripper_closed_cmd"):
                self.open_gripper()
                d.qpos[self.finger_qpos_adr] = robot_mod.MAX_OPENING / 2
            if not hasattr(self, "_hinge_target"):
                self._hinge_target, self._hinge_speed = 0.0, self.config.hinge_default_speed
            mujoco.mj_forward(self.model, d)
        else:
            self.move_joints(self.home_qpos)

    def go_present(self) -> None:
        """Arm to the grading posture (`RobotConfig.present_qpos`), gripper state unchanged."""
        self.move_joints(self.present_qpos)

    def dump_left_bin(self) -> dict[str, int]:
        """The bin reset: arm home, tilt the left bin over the right one, shake, return.

        A held object is first released over the left bin. Returns the object counts per
        region after the reset.
        """
        cfg = self.config
        if self._gripper_closed_cmd:
            pos, yaw = self.tcp_pose()
            above_left = np.array([*self.scene_config.bin_center("left"), pos[2]])
            self.move_tcp(above_left, yaw)
            self.actuate_gripper(close=False)
        self.go_home()
        speed = cfg.dump_speed
        self.set_bin_motor(cfg.dump_angle, speed)
        self.advance(cfg.dump_angle / speed + 0.1)
        # Shake so that nothing stays wedged in a corner or against the plate.
        amplitude = cfg.dump_shake_amplitude
        for _ in range(cfg.dump_shakes):
            self.set_bin_motor(cfg.dump_angle - amplitude, speed)
            self.advance(amplitude / speed + 0.03)
            self.set_bin_motor(cfg.dump_angle, speed)
            self.advance(amplitude / speed + 0.03)
        self.advance(cfg.dump_hold_time)
        self.set_bin_motor(0.0, speed)
        self.advance(cfg.dump_angle / speed + cfg.dump_settle_time)
        return self.count_objects()

    # ---------------------------------------------------------------------- scene respawn
    def _park(self, index: int) -> None:
        m, d = self.model, self.data
        body = self.object_body[index]
        m.body_gravcomp[body] = 1.0
        geoms = self.object_geoms[index]
        m.geom_contype[geoms] = 0
        m.geom_conaffinity[geoms] = 0
        m.geom_group[geoms] = HIDDEN_GEOM_GROUP
        px, py, pz = self.scene_config.park_origin
        adr = self.object_qpos_adr[index]
        d.qpos[adr : adr + 7] = [px + 0.4 * index, py, pz, 1, 0, 0, 0]
        dof = self.object_dof_adr[index]
        d.qvel[dof : dof + 6] = 0

    def _unpark(self, index: int) -> None:
        m = self.model
        m.body_gravcomp[self.object_body[index]] = 0.0
        geoms = self.object_geoms[index]
        m.geom_contype[geoms] = 1
        m.geom_conaffinity[geoms] = 1
        m.geom_group[geoms] = 0

    def _park_all(self) -> None:
        for i in range(len(self.variants)):
            self._park(i)
        self.active_objects = []

    def clear_objects(self) -> None:
        """Remove every object from the scene (park them); runs mj_forward."""
        self._park_all()
        mujoco.mj_forward(self.model, self.data)

    def vary_look(self, rng: np.random.Generator) -> None:
        """Draw new lighting and background around this cell (light direction, colour and
        level, ambient light, table, walls and floor tint, plate colour), keeping its bins,
        cameras and the plate's printed quarters. A user recording success-detector examples
        does this between clips (seed Sec. XI: "varying lighting, objects and background"),
        so that the detector learns what stays the same. Visual only; `restore_look` undoes it.
        """
        m = self.model
        if self._base_look is None:
            self._base_look = {
                "light_dir": m.light_dir.copy(),
                "light_diffuse": m.light_diffuse.copy(),
                "ambient": m.vis.headlight.ambient.copy(),
                "geom_rgba": m.geom_rgba.copy(),
                "mat_rgba": m.mat_rgba.copy(),
            }
        self.restore_look()
        light = m.light("key_light").id
        m.light_dir[light], m.light_diffuse[light], m.vis.headlight.ambient[:] = (
            scene_mod.draw_lighting(rng)
        )
        m.geom_rgba[m.geom("table_top").id, :3] = scene_mod.draw_table_rgb(rng)
        wall = scene_mod.draw_wall_rgb(rng)
        for name in ("wall_back", "wall_left", "wall_right"):
            m.geom_rgba[m.geom(name).id, :3] = wall
        m.mat_rgba[m.material("floor_mat").id, :3] = rng.uniform(0.5, 1.0, 3)
        plate = scene_mod.draw_plate_rgb(rng)
        for g in self.plate_geoms:
            name = m.geom(g).name
            if name == "plate_base" or name.startswith("plate_rim_"):
                m.geom_rgba[g, :3] = plate
            elif name.startswith("plate_divider_"):
                m.geom_rgba[g, :3] = [scene_mod.DIVIDER_SHADE * c for c in plate]

    def restore_look(self) -> None:
        """Undo `vary_look`: the cell's own lighting and colours."""
        base = self._base_look
        if base is None:
            return
        m = self.model
        m.light_dir[:] = base["light_dir"]
        m.light_diffuse[:] = base["light_diffuse"]
        m.vis.headlight.ambient[:] = base["ambient"]
        m.geom_rgba[:] = base["geom_rgba"]
        m.mat_rgba[:] = base["mat_rgba"]

    def respawn(self, rng: np.random.Generator | None = None) -> list[str]:
        """Full scene reset: new random object subset dropped into the right bin, plate pose
        re-drawn, arm home, gripper open, bin level. Returns the spawned variant names."""
        rng = rng if rng is not None else self.rng
        cfg = self.config
        d = self.data
        self._park_all()
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        n_cat = len(objects_mod.CATEGORIES)
        per_cat = len(self.variants) // n_cat
        chosen: list[int] = []
        if cfg.one_per_category:
            for c in range(min(n, n_cat)):
                chosen.append(c * per_cat + int(rng.integers(per_cat)))
        remaining = [i for i in range(len(self.variants)) if i not in chosen]
        extra = (
            rng.choice(remaining, size=n - len(chosen), replace=False) if n > len(chosen) else []
        )
        chosen.extend(int(i) for i in extra)
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]

        # Everything to a clean state (velocities, warm starts, sleep states, contacts), so
        # that a respawn depends only on its seed; the clock keeps running.
        now = d.time
        mujoco.mj_resetData(self.model, d)
        d.time = now
        self._park_all()
        d.qpos[self.hinge_qpos_adr] = 0.0
        d.ctrl[self.hinge_act] = 0.0
        self._hinge_target, self._hinge_speed = 0.0, cfg.hinge_default_speed
        self.open_gripper()
        d.qpos[self.finger_qpos_adr] = robot_mod.MAX_OPENING / 2
        self.go_home(instant=True)
        self._randomize_plate(rng)

        # Drop the objects into the right bin in staggered layers.
        center = self.scene_config.bin_center("right")
        half = self.scene_config.bin_half("right")
        for k, index in enumerate(chosen):
            variant = self.variants[index]
            self._unpark(index)
            reach = np.maximum(
                0.0, half - np.minimum(variant.bounding_radius, half - 0.02) - 0.005
            )
            xy = center + rng.uniform(-reach, reach)
            z = self.floor_z + variant.rest_height + 0.01 + 0.05 * k
            yaw = rng.uniform(-math.pi, math.pi)
            quat = np.array([math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
            adr = self.object_qpos_adr[index]
            d.qpos[adr : adr + 7] = [*xy, z, *quat]
        self.active_objects = sorted(chosen)
        mujoco.mj_forward(self.model, d)
        self.advance(cfg.spawn_settle_time)
        # Anything that bounced out of the right bin goes back in on top.
        for index in list(self.active_objects):
            if self.object_region(index) != "right_bin":
                adr = self.object_qpos_adr[index]
                d.qpos[adr : adr + 7] = [*center, self.scene_config.rim_z + 0.05, 1, 0, 0, 0]
                dof = self.object_dof_adr[index]
                d.qvel[dof : dof + 6] = 0
                self.advance(0.5)
        return [self.variants[i].name for i in self.active_objects]

    def _randomize_plate(self, rng: np.random.Generator) -> None:
        cfg = self.config
        yaw = rng.uniform(-cfg.plate_yaw_range, cfg.plate_yaw_range)
        shift = rng.uniform(-cfg.plate_shift, cfg.plate_shift, 2)
        self.model.body_pos[self.plate_body] = self._plate_home_pos + [shift[0], shift[1], 0.0]
        self.model.body_quat[self.plate_body] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]

    def place_object(self, index: int, position, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
        """Teleport an object (activating it if parked) to a pose, at rest; runs mj_forward."""
        if index not in self.active_objects:
            self._unpark(index)
            self.active_objects = sorted([*self.active_objects, index])
        adr = self.object_qpos_adr[index]
        self.data.qpos[adr : adr + 3] = position
        self.data.qpos[adr + 3 : adr + 7] = np.asarray(quat, float) / np.linalg.norm(quat)
        dof = self.object_dof_adr[index]
        self.data.qvel[dof : dof + 6] = 0
        mujoco.mj_forward(self.model, self.data)

    def set_arm_qpos(self, qpos: np.ndarray) -> None:
        """Teleport the arm (and its servo targets) to `qpos`; runs mj_forward."""
        d = self.data
        d.qpos[self.arm_qpos_adr] = qpos
        d.qvel[self.arm_dof_adr] = 0
        d.ctrl[self.arm_act] = qpos
        self._trajectory = _Trajectory(np.array([d.time]), np.asarray(qpos, float)[None, :].copy())
        mujoco.mj_forward(self.model, d)

    def set_finger_qpos(self, opening: float) -> None:
        """Teleport the fingers to an opening [m] without changing the command."""
        self.data.qpos[self.finger_qpos_adr] = opening / 2
        self.data.qvel[self.finger_dof_adr] = 0
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------------- rendering
    def render(self, camera: str, width: int, height: int | None = None) -> np.ndarray:
        """RGB image (height, width, 3) uint8 from a named camera."""
        height = width if height is None else height
        if camera not in scene_mod.POLICY_CAMERA_NAMES:
            raise ValueError(
                f"unknown camera {camera!r}; cameras: {scene_mod.POLICY_CAMERA_NAMES}"
            )
        vis = self.model.vis.global_
        if not (1 <= width <= vis.offwidth and 1 <= height <= vis.offheight):
            raise ValueError(
                f"image size {width}x{height} outside 1..{vis.offwidth}x{vis.offheight}"
            )
        key = (height, width)
        renderer = self._renderers.get(key)
        if renderer is None:
            renderer = mujoco.Renderer(self.model, height, width)
            self._renderers[key] = renderer
        if camera == robot_mod.WRIST_CAMERA:  # part of the attached robot model
            camera = scene_mod.ROBOT_PREFIX + camera
        renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        return renderer.render()

    def render_cameras(self, size: int, cameras=scene_mod.CAMERA_NAMES) -> dict[str, np.ndarray]:
        """Square images from several cameras (default: the three SD cameras)."""
        return {name: self.render(name, size, size) for name in cameras}

    def close(self) -> None:
        """Release the renderers (GL contexts). The cell stays usable for physics."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
