"""Cartesian move planning and execution monitoring for the iiwa controller (no ROS here).

`plan_move` turns a MoveEndEffector request into a joint trajectory: the target is clamped
into the cell's free space (`mtopt_iiwa.safety.CellVolumes`: the bins and the transit slab
above the walls); the path from the current pose is a straight Cartesian line or, when that
line would pass over a wall below the transit height, up / across / down over it. Each leg
(and the yaw change) is sampled with a smooth time profile, and each sample is solved with IK
seeded by the previous one, so the gripper moves along lines (what a top-down grasp needs),
not along joint-space arcs. Every plan keeps within the joint limits and their margins
(`mtopt_iiwa.safety.JointLimits`): its timing is stretched until it does. `MoveMonitor`
watches measured joint positions and decides REACHED / CLAMPED / BLOCKED / TIMEOUT / FAULT;
`GripperMonitor` does the same for a finger command.
"""

from __future__ import annotations

import enum
import functools
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.kinematics import IiwaKinematics, wrap_angle
from mtopt_iiwa.safety import CellVolumes, JointLimits

MODE_DELTA = 0
MODE_ABSOLUTE = 1


class Outcome(enum.IntEnum):
    """Values of MoveEndEffector.Result.outcome."""

    REACHED = 0
    CLAMPED = 1
    BLOCKED = 2
    TIMEOUT = 3
    FAULT = 4


class SettleWindow:
    """The latest samples spanning at least `window` seconds, to tell whether a signal settled.

    The newest sample at or before `now - window` is kept, so the span can be judged however
    sparsely the samples arrive (a loaded machine delivers state late and in gaps; a window that
    dropped everything older than `window` would never fill and never see a stall).
    """

    def __init__(self, window: float):
        self.window = window
        self._samples: deque = deque()

    def add(self, now: float, value) -> None:
        self._samples.append((now, np.asarray(value, dtype=np.float64)))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def covers_window(self) -> bool:
        """Whether the samples span the whole window."""
        return self._samples[-1][0] - self._samples[0][0] >= self.window

    def value_range(self) -> float:
        """Largest max-min of any component over the samples."""
        values = np.array([value for _, value in self._samples])
        return float(np.max(values.max(axis=0) - values.min(axis=0)))


@dataclass(frozen=True)
class MotionPlan:
    """A joint trajectory for one move."""

    times: np.ndarray  # (n,) time from start of each waypoint [s], increasing, last = duration
    positions: np.ndarray  # (n, 7) joint positions [rad]
    velocities: np.ndarray  # (n, 7) joint velocities [rad/s] (zero at the end)
    start_position: np.ndarray  # (3,) grasp point at the start [m]
    start_yaw: float
    target_position: np.ndarray  # (3,) where the final waypoint puts the grasp point [m]
    target_yaw: float  # yaw the final waypoint gives [rad]
    requested_position: np.ndarray  # (3,) the request, before any clamping [m]
    clamped: bool  # the target was moved by the free space, the joint limits or the reach
    message: str  # why it was clamped ("" if not)
    #: Corners of the grasp point's path [m]: start and target, with the transit points
    #: between them when the move was routed over the walls (up, across, down).
    corners: tuple = ()
    volume: str = ""  # the free-space volume the target is in ("" for joint moves)

    @property
    def duration(self) -> float:
        """Motion time [s]."""
        return float(self.times[-1])

    @property
    def final_q(self) -> np.ndarray:
        """Joint positions at the end of the motion."""
        return self.positions[-1]

    @property
    def routed(self) -> bool:
        """The move goes over the transit height instead of a straight line."""
        return len(self.corners) > 2


#: Longest duration a move may ask for [s]: a longer one is a bad goal (a huge one would
#: overflow the plan's timing to inf).
MAX_MOVE_DURATION_S = 600.0


def _smoothstep(u: np.ndarray) -> np.ndarray:
    """Cubic time scaling with zero velocity at both ends."""
    return u * u * (3.0 - 2.0 * u)


@functools.lru_cache(maxsize=16)
def safety_of(config: IiwaControllerConfig) -> tuple[CellVolumes, JointLimits]:
    """The free-space volumes and the checked joint limits of a configuration."""
    return CellVolumes.from_config(config), JointLimits.from_config(config)


def kinematics_for(config: IiwaControllerConfig, urdf_path: str | None = None) -> IiwaKinematics:
    """The controller's kinematics: the configured tool offset, and IK/joint clamping inside
    both the URDF limits and `joint_position_limits`, `joint_limit_margin` from them."""
    return IiwaKinematics(
        tool_offset=config.tool_offset,
        limit_margin=config.joint_limit_margin,
        position_limits=config.joint_position_limits,
        urdf_path=urdf_path,
    )


def plan_move(
    kin: IiwaKinematics,
    config: IiwaControllerConfig,
    q_current,
    mode: int,
    translation,
    yaw: float,
    duration: float = 0.0,
) -> MotionPlan:
    """Plan a move from joint positions `q_current` (see the module docstring).

    Raises ValueError for a bad request (unknown mode, NaN values).
    """
    volumes, limits = safety_of(config)
    q_current = kin.clamp_joints(np.asarray(q_current, dtype=np.float64))
    translation = np.asarray(translation, dtype=np.float64)
    if translation.shape != (3,) or not np.all(np.isfinite(translation)):
        raise ValueError(f"translation must be 3 finite numbers, got {translation}")
    if not math.isfinite(yaw) or not math.isfinite(duration):
        raise ValueError(f"yaw and duration must be finite, got {yaw}, {duration}")
    if duration > MAX_MOVE_DURATION_S:
        raise ValueError(f"duration {duration} s is above {MAX_MOVE_DURATION_S:.0f} s")
    start = kin.fk(q_current)
    start_yaw = start.yaw
    if mode == MODE_DELTA:
        requested = start.position + translation
        requested_yaw = start_yaw + float(yaw)
    elif mode == MODE_ABSOLUTE:
        requested = translation
        requested_yaw = start_yaw + wrap_angle(float(yaw) - start_yaw)  # the short way round
    else:
        raise ValueError(f"unknown mode {mode} (0 = delta, 1 = absolute)")
    clamp = volumes.clamp(requested, start.position)
    goal = clamp.position
    reasons = [f"workspace (outside the free space, into {clamp.volume})"] if clamp.clamped else []
    goal_yaw = min(max(requested_yaw, config.yaw_min), config.yaw_max)
    if abs(goal_yaw - requested_yaw) > 1e-12:
        reasons.append("yaw limits")
    yaw_change = goal_yaw - start_yaw

    # The path: a straight line, or up / across / down over the walls. The yaw turns in
    # proportion to the distance covered.
    corners = volumes.route(start.position, goal)
    legs = list(zip(corners[:-1], corners[1:], strict=True))
    lengths = np.array([np.linalg.norm(b - a) for a, b in legs])
    total = float(lengths.sum())
    fractions = lengths / total if total > 1e-12 else np.full(len(lengths), 1 / len(lengths))
    leg_yaws = yaw_change * fractions
    nominal = np.maximum(
        lengths / config.max_linear_speed, np.abs(leg_yaws) / config.max_yaw_speed
    )
    wanted = duration if duration > 0 else max(config.min_duration, float(nominal.sum()))
    leg_durations = np.maximum(
        nominal * (wanted / nominal.sum()) if nominal.sum() > 0 else fractions * wanted, 1e-3
    )

    positions, times, stops = [q_current], [0.0], [0]
    leg_yaw0 = start_yaw
    solution = None
    for k, (a, b) in enumerate(legs):
        n = max(
            2,
            math.ceil(lengths[k] / config.waypoint_spacing),
            math.ceil(abs(leg_yaws[k]) / config.waypoint_yaw_spacing),
        )
        s = _smoothstep(np.linspace(0.0, 1.0, n + 1))[1:]
        leg = []
        for i, sk in enumerate(s):
            last = k == len(lengths) - 1 and i == n - 1
            solution = kin.ik(
                a + sk * (b - a),
                leg_yaw0 + sk * leg_yaws[k],
                (leg or positions)[-1],
                position_tolerance=config.ik_tolerance if last else 10 * config.ik_tolerance,
                orientation_tolerance=config.ik_tolerance * 10,
                rest_q=config.rest_q,
            )
            leg.append(solution.q)
        leg_yaw0 += leg_yaws[k]
        # Each leg (it starts and ends at rest) slowed down as far as the joint limits need.
        unit = np.linspace(0.0, 1.0, n + 1)[1:]
        stretch = limits.stretch_factor(
            unit * leg_durations[k], leg, positions[-1], _velocity_cap(config, limits)
        )
        leg_time = leg_durations[k] * stretch * (1 + 1e-6)
        times.extend(times[-1] + unit * leg_time)
        positions.extend(leg)
        stops.append(len(positions) - 1)
    if solution.position_error > config.reach_tolerance or (
        solution.orientation_error > config.yaw_tolerance
    ):
        reasons.append(
            "joint limits" if solution.joints_at_limit else "reach"
        )  # IK ended short: the pose is outside what the arm can do pointing down
    return _timed_plan(
        kin,
        config,
        np.array(positions),
        np.array(times),
        stops,
        requested,
        ("clamped: " + ", ".join(reasons)) if reasons else "",
        corners=tuple(corners),
        volume=clamp.volume,
    )


def plan_rise(kin: IiwaKinematics, config: IiwaControllerConfig, q_current) -> MotionPlan | None:
    """A straight vertical move to the top of the free space when the gripper is below it over
    the bins (e.g. down in a bin), else None: what a joint-space move (home, present) starts
    with. A joint-space move interpolates joints, not the gripper's path, so starting it low
    could sweep the gripper through a bin wall."""
    volumes, _ = safety_of(config)
    tcp = kin.fk(np.asarray(q_current, dtype=np.float64))
    over = any(v.over(tcp.position) for v in volumes.volumes)
    if not over or tcp.position[2] >= volumes.top - config.position_tolerance:
        return None
    target = [tcp.position[0], tcp.position[1], volumes.top]
    return plan_move(kin, config, q_current, MODE_ABSOLUTE, target, tcp.yaw)


def plan_joint_move(
    kin: IiwaKinematics, config: IiwaControllerConfig, q_current, q_target, duration: float = 0.0
) -> MotionPlan:
    """Plan a joint-space move (e.g. to the home posture), with the same smooth time profile."""
    q_current = kin.clamp_joints(np.asarray(q_current, dtype=np.float64))
    q_target = np.asarray(q_target, dtype=np.float64)
    if q_target.shape != (7,) or not np.all(np.isfinite(q_target)):
        raise ValueError(f"joint target must be 7 finite numbers, got {q_target}")
    q_goal = kin.clamp_joints(q_target)
    n = 20
    s = _smoothstep(np.linspace(0.0, 1.0, n + 1))[:, None]
    positions = q_current + s * (q_goal - q_current)
    clamped = bool(np.any(np.abs(q_goal - q_target) > 1e-12))
    return _timed_plan(
        kin,
        config,
        positions,
        np.linspace(0.0, 1.0, n + 1) * max(duration, config.min_duration),
        [0, n],
        kin.fk(q_goal).position,
        "clamped: joint limits" if clamped else "",
    )


def _velocity_cap(config: IiwaControllerConfig, limits: JointLimits) -> np.ndarray:
    """Planned joint speed limit [rad/s]: max_joint_velocity, or the checked limit if lower."""
    return np.minimum(config.max_joint_velocity, limits.max_velocity)


def _timed_plan(
    kin, config, positions, times, stops, requested, message, corners=(), volume=""
) -> MotionPlan:
    """Velocities (zero at the `stops`: start, end, corners) and times, stretched as a whole
    if needed so no joint exceeds max_joint_velocity or its checked velocity and acceleration
    limits (`JointLimits.check` accepts the plan)."""
    _, limits = safety_of(config)
    positions = np.asarray(positions, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    stretch = limits.stretch_factor(
        times[1:], positions[1:], positions[0], _velocity_cap(config, limits)
    )
    if stretch > 1.0:
        times = times * stretch * (1 + 1e-6)
    velocities = np.gradient(positions, times, axis=0)
    velocities[list(stops)] = 0.0
    start, final = kin.fk(positions[0]), kin.fk(positions[-1])
    return MotionPlan(
        times=times,
        positions=positions,
        velocities=velocities,
        start_position=start.position,
        start_yaw=start.yaw,
        target_position=final.position,
        target_yaw=final.yaw,
        requested_position=np.asarray(requested, dtype=np.float64),
        clamped=bool(message),
        message=message,
        corners=tuple(np.asarray(c, dtype=np.float64) for c in corners),
        volume=volume,
    )


@dataclass
class MoveStatus:
    """What `MoveMonitor.update` reports each time it sees a joint state."""

    done: bool
    outcome: Outcome | None  # set when done
    position: np.ndarray  # grasp point now [m]
    rotation: np.ndarray  # tool rotation now
    position_error: float  # distance to the plan's target [m]
    yaw_error: float  # |yaw - target yaw| [rad], wrapped
    progress: float  # [0, 1]
    message: str = ""


@dataclass
class MoveMonitor:
    """Decides when a planned move is over, from the measured joint positions.

    REACHED (CLAMPED if the plan was clamped): the trajectory time has passed and the grasp point
    is within `position_tolerance` and `yaw_tolerance` of the target. BLOCKED: after the
    trajectory time the joints stopped moving (each joint's range over the last `stall_window`
    under `stall_joint_threshold`) short of the target. TIMEOUT: `timeout` seconds passed first.
    """

    kin: IiwaKinematics
    config: IiwaControllerConfig
    plan: MotionPlan
    start_time: float
    timeout: float
    _history: SettleWindow = field(init=False)

    def __post_init__(self):
        self._history = SettleWindow(self.config.stall_window)

    def update(self, now: float, q) -> MoveStatus:
        """Feed one measurement (time [s], joint positions) and get the status."""
        q = np.asarray(q, dtype=np.float64)
        pose = self.kin.fk(q)
        err = float(np.linalg.norm(pose.position - self.plan.target_position))
        yaw_err = abs(wrap_angle(pose.yaw - self.plan.target_yaw))
        w = self.config.yaw_weight
        total = float(np.linalg.norm(self.plan.target_position - self.plan.start_position))
        total += w * abs(wrap_angle(self.plan.target_yaw - self.plan.start_yaw))
        elapsed = now - self.start_time
        if total > 1e-9:
            progress = 1.0 - (err + w * yaw_err) / total
        else:
            progress = elapsed / max(self.plan.duration, 1e-9)
        status = MoveStatus(
            False, None, pose.position, pose.rotation, err, yaw_err, min(1.0, max(0.0, progress))
        )
        self._history.add(now, q)

        within = err <= self.config.position_tolerance and yaw_err <= self.config.yaw_tolerance
        if within and elapsed >= self.plan.duration:
            status.done = True
            status.progress = 1.0
            status.outcome = Outcome.CLAMPED if self.plan.clamped else Outcome.REACHED
            status.message = self.plan.message or "reached"
            return status
        if elapsed > self.timeout:
            status.done, status.outcome = True, Outcome.TIMEOUT
            status.message = (
                f"target not reached in {self.timeout:.2f} s "
                f"(error {err * 1000:.1f} mm, yaw {yaw_err:.3f} rad)"
            )
            return status
        stopped = (
            self._history.covers_window()
            and self._history.value_range() < self.config.stall_joint_threshold
        )
        if elapsed >= self.plan.duration and stopped:
            status.done, status.outcome = True, Outcome.BLOCKED
            status.message = (
                f"arm stopped {err * 1000:.1f} mm (yaw {yaw_err:.3f} rad) short of the target"
            )
        return status


class GripperOutcome(enum.Enum):
    """How a finger command ended."""

    REACHED = "reached"  # opening within tolerance of the target
    STALLED = "stalled"  # fingers stopped short (something between them)
    TIMEOUT = "timeout"


@dataclass
class GripperStatus:
    """What `GripperMonitor.update` reports."""

    done: bool
    outcome: GripperOutcome | None
    position: float
    effort: float
    message: str = ""


@dataclass
class GripperMonitor:
    """Decides when a finger command is over from `gripper/state` samples.

    REACHED: the opening is within `gripper_tolerance` of the target. STALLED: the opening
    ranged less than `gripper_settle_threshold` over the last `gripper_settle_window`, short of
    the target (an object between the pads). TIMEOUT: neither within `timeout` seconds.
    """

    config: IiwaControllerConfig
    target: float
    start_time: float
    timeout: float
    _history: SettleWindow = field(init=False)

    def __post_init__(self):
        self._history = SettleWindow(self.config.gripper_settle_window)

    def update(
        self, now: float, position: float, effort: float, object_detected: bool
    ) -> GripperStatus:
        """Feed one gripper state sample (received after the command was sent)."""
        cfg = self.config
        status = GripperStatus(False, None, float(position), float(effort))
        self._history.add(now, [float(position)])
        if abs(position - self.target) <= cfg.gripper_tolerance and not object_detected:
            status.done, status.outcome = True, GripperOutcome.REACHED
            status.message = "reached"
            return status
        settled = (
            self._history.covers_window()
            and self._history.value_range() < cfg.gripper_settle_threshold
        )
        if settled and now - self.start_time >= cfg.gripper_settle_window:
            status.done, status.outcome = True, GripperOutcome.STALLED
            status.message = f"fingers stopped at {position * 1000:.1f} mm" + (
                " holding an object" if object_detected else ""
            )
            return status
        if now - self.start_time > self.timeout:
            status.done, status.outcome = True, GripperOutcome.TIMEOUT
            status.message = f"gripper did not settle in {self.timeout:.2f} s"
        return status


def plan_setpoint(plan: MotionPlan, elapsed: float) -> np.ndarray:
    """Where `plan` commands the joints `elapsed` s after its start (linear between its
    waypoints; its end after it)."""
    t = float(np.clip(elapsed, plan.times[0], plan.times[-1]))
    return np.array(
        [np.interp(t, plan.times, plan.positions[:, j]) for j in range(plan.positions.shape[1])]
    )
