"""Safety layer of the arm's command path (no ROS here): joint limits and the cell's free space.

`JointLimits` checks a joint trajectory (times from start, positions, optional velocities)
against position, velocity and acceleration limits, each with a margin, before anything is
sent to the arm: `check` raises `JointLimitError` naming the joint, the value, the limit and
the time. The controller checks every trajectory it publishes with it; the simulated cell
(`mtopt_sim`) refuses out-of-limit trajectories with it, as a real controller's limits would.

`CellVolumes` is the free space of a cell for the grasp point: named boxes, one per bin
interior (inside its walls), and a transit slab above `transit_height`, over the walls. A
target outside them is clamped into one of them (never onto a wall), and a move that would
pass over a wall below the transit height is routed over it: up, across, down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_JOINTS = 7
#: KUKA LBR iiwa 14 R820 data sheet: axis ranges A1..A7 [deg] (symmetric, +-).
IIWA14_POSITION_LIMITS_DEG = (170.0, 120.0, 170.0, 120.0, 170.0, 120.0, 175.0)
#: KUKA LBR iiwa 14 R820 data sheet: maximum axis speeds A1..A7 [deg/s].
IIWA14_VELOCITY_LIMITS_DEG_S = (85.0, 85.0, 100.0, 75.0, 130.0, 135.0, 135.0)
#: KUKA publishes no joint acceleration limits; 10 rad/s^2 per joint is the value of the
#: lbr_fri_ros2_stack's iiwa14 MoveIt configuration (iiwa14_moveit_config/config/
#: joint_limits.yaml, max_acceleration of every joint).
IIWA14_ACCELERATION_LIMIT = 10.0
IIWA14_POSITION_LIMITS = tuple(math.radians(v) for v in IIWA14_POSITION_LIMITS_DEG)
IIWA14_VELOCITY_LIMITS = tuple(math.radians(v) for v in IIWA14_VELOCITY_LIMITS_DEG_S)
IIWA14_ACCELERATION_LIMITS = (IIWA14_ACCELERATION_LIMIT,) * NUM_JOINTS
#: Axis names in messages.
AXIS_NAMES = tuple(f"A{i}" for i in range(1, NUM_JOINTS + 1))
_EPS = 1e-9


class JointLimitError(ValueError):
    """A trajectory beyond a joint limit; the message names the joint, value, limit and time."""


@dataclass(frozen=True)
class TrajectoryRates:
    """Finite-difference rates of a joint trajectory (see `trajectory_rates`)."""

    segment_times: np.ndarray  # (m,) end time of each segment [s]
    velocities: np.ndarray  # (m, 7) mean velocity of each segment [rad/s] (inf: a jump)
    acceleration_times: np.ndarray  # (k,) time of each acceleration sample [s]
    accelerations: np.ndarray  # (k, 7) [rad/s^2]


def trajectory_rates(times, positions, start=None, start_tolerance: float = 0.0):
    """Velocities and accelerations of a piecewise-linear joint trajectory.

    The trajectory runs from `start` at t = 0 (if given; else from the first point) through
    `positions` at `times` and is taken to start and end at rest. Each segment's velocity is
    its mean (dq / dt; infinite for a jump: a zero-duration step); accelerations are the
    velocity changes between consecutive segment midpoints (and from rest at the start, to rest
    at the end). `start_tolerance` [rad] is subtracted from each joint's first step: the offset
    a real start position may have from the commanded one (servo lag) is not a motion.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64).reshape(len(times), NUM_JOINTS)
    if start is not None:
        times = np.concatenate([[0.0], times])
        start = np.asarray(start, dtype=np.float64).reshape(1, NUM_JOINTS)
        positions = np.vstack([start, positions])
    steps = np.diff(positions, axis=0)
    if start is not None and len(steps) and start_tolerance > 0:
        steps[0] = np.sign(steps[0]) * np.maximum(0.0, np.abs(steps[0]) - start_tolerance)
    durations = np.diff(times)
    moving = np.abs(steps) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        velocities = np.where(
            durations[:, None] > 0,
            steps / np.where(durations > 0, durations, 1.0)[:, None],
            np.where(moving, np.sign(steps) * np.inf, 0.0),
        )
    # Accelerations between the velocity samples: rest at the first time, each segment's mean
    # at its midpoint, rest at the last time. Zero-duration segments that do not move carry no
    # sample; one that moves is a jump (infinite velocity), reported as such above.
    keep = durations > 0
    sample_t = np.concatenate([[times[0]], (times[:-1] + durations / 2)[keep], [times[-1]]])
    sample_v = np.vstack([np.zeros((1, NUM_JOINTS)), velocities[keep], np.zeros((1, NUM_JOINTS))])
    gaps = np.diff(sample_t)
    valid = gaps > 0
    accelerations = np.diff(sample_v, axis=0)[valid] / gaps[valid][:, None]
    return TrajectoryRates(times[1:], velocities, sample_t[1:][valid], accelerations)


@dataclass(frozen=True)
class JointLimits:
    """Symmetric joint limits A1..A7 with margins; see the module docstring.

    position [rad], velocity [rad/s], acceleration [rad/s^2] (None: not checked) are the
    robot's limits; the checked limits are position - position_margin [rad], velocity *
    (1 - velocity_margin) and acceleration * (1 - acceleration_margin).
    """

    position: tuple[float, ...] = IIWA14_POSITION_LIMITS
    velocity: tuple[float, ...] = IIWA14_VELOCITY_LIMITS
    acceleration: tuple[float, ...] | None = IIWA14_ACCELERATION_LIMITS
    position_margin: float = 0.0
    velocity_margin: float = 0.0
    acceleration_margin: float = 0.0

    def __post_init__(self):
        for name in ("position", "velocity", "acceleration"):
            value = getattr(self, name)
            if value is None and name == "acceleration":
                continue
            if len(value) != NUM_JOINTS or not all(math.isfinite(v) and v > 0 for v in value):
                raise ValueError(f"{name} limits must be {NUM_JOINTS} positive numbers: {value}")
        if not 0 <= self.position_margin < min(self.position):
            raise ValueError("position_margin must be >= 0 and below every limit")
        for name in ("velocity_margin", "acceleration_margin"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be a fraction in [0, 1)")

    @classmethod
    def from_config(cls, config) -> JointLimits:
        """The limits of an `IiwaControllerConfig`."""
        return cls(
            position=tuple(config.joint_position_limits),
            velocity=tuple(config.joint_velocity_limits),
            acceleration=tuple(config.joint_acceleration_limits),
            position_margin=config.joint_position_margin,
            velocity_margin=config.joint_velocity_margin,
            acceleration_margin=config.joint_acceleration_margin,
        )

    @property
    def upper(self) -> np.ndarray:
        """Checked upper position limits [rad] (the lower ones are their negatives)."""
        return np.asarray(self.position) - self.position_margin

    @property
    def max_velocity(self) -> np.ndarray:
        """Checked velocity limits [rad/s]."""
        return np.asarray(self.velocity) * (1.0 - self.velocity_margin)

    @property
    def max_acceleration(self) -> np.ndarray | None:
        """Checked acceleration limits [rad/s^2] (None: not checked)."""
        if self.acceleration is None:
            return None
        return np.asarray(self.acceleration) * (1.0 - self.acceleration_margin)

    def clamp(self, q) -> np.ndarray:
        """Joint positions clipped into the checked position limits."""
        return np.clip(np.asarray(q, dtype=np.float64), -self.upper, self.upper)

    def check(
        self, times, positions, start=None, velocities=None, start_tolerance: float = 0.0
    ) -> None:
        """Raise JointLimitError if the trajectory leaves the limits (see `violation`)."""
        message = self.violation(times, positions, start, velocities, start_tolerance)
        if message is not None:
            raise JointLimitError(message)

    def violation(
        self, times, positions, start=None, velocities=None, start_tolerance: float = 0.0
    ) -> str | None:
        """Why the trajectory leaves the limits, or None if it does not.

        `times` (k,) from the trajectory start [s], >= 0 and strictly increasing; `positions`
        (k, 7) [rad]; `start` (7,) where the arm is at t = 0 (the first segment runs from it:
        a point at t = 0 away from it is a jump); `velocities` (k, 7) the points' velocities
        if the trajectory has them; `start_tolerance` see `trajectory_rates`. Checked: every
        point's position, every segment's mean velocity and every given velocity, and the
        accelerations between segments (from rest at the start, to rest at the end).
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(times) == 0:
            return "empty trajectory"
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (len(times), NUM_JOINTS):
            return f"positions must be {len(times)} x {NUM_JOINTS}, got {positions.shape}"
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(positions))):
            return "times and positions must be finite"
        if times[0] < 0 or np.any(np.diff(times) <= 0):
            return "times must be >= 0 and strictly increasing"
        upper = self.upper
        over = np.abs(positions) - upper
        if np.any(over > _EPS):
            i, j = np.unravel_index(int(np.argmax(over)), over.shape)
            return (
                f"joint {AXIS_NAMES[j]} position {positions[i, j]:.4g} rad at "
                f"t={times[i]:.3f} s is beyond its limit +-{upper[j]:.4f} rad "
                f"(+-{math.degrees(self.position[j]):.0f} deg less {self.position_margin} rad)"
            )
        if start is not None:
            start = np.asarray(start, dtype=np.float64).reshape(-1)
            if start.shape != (NUM_JOINTS,) or not np.all(np.isfinite(start)):
                return f"start must be {NUM_JOINTS} finite numbers"
        vmax = self.max_velocity
        rates = trajectory_rates(times, positions, start, start_tolerance)
        ratio = np.abs(rates.velocities) / vmax
        if np.any(ratio > 1 + _EPS):
            i, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            t = rates.segment_times[i]
            what = (
                f"jumps at t={t:.3f} s"
                if math.isinf(rates.velocities[i, j])
                else f"velocity {abs(rates.velocities[i, j]):.3f} rad/s before t={t:.3f} s"
            )
            return f"joint {AXIS_NAMES[j]} {what}: {self._velocity_limit_text(j)}"
        if velocities is not None:
            given = np.asarray(velocities, dtype=np.float64)
            if given.shape != positions.shape or not np.all(np.isfinite(given)):
                return f"velocities must be {len(times)} x {NUM_JOINTS} finite numbers"
            ratio = np.abs(given) / vmax
            if np.any(ratio > 1 + _EPS):
                i, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
                return (
                    f"joint {AXIS_NAMES[j]} velocity {abs(given[i, j]):.3f} rad/s at "
                    f"t={times[i]:.3f} s: {self._velocity_limit_text(j)}"
                )
        amax = self.max_acceleration
        if amax is not None and len(rates.accelerations):
            ratio = np.abs(rates.accelerations) / amax
            if np.any(ratio > 1 + _EPS):
                i, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
                return (
                    f"joint {AXIS_NAMES[j]} acceleration {abs(rates.accelerations[i, j]):.2f} "
                    f"rad/s^2 at t={rates.acceleration_times[i]:.3f} s is beyond its limit "
                    f"{amax[j]:.2f} rad/s^2 ({self.acceleration[j]} less "
                    f"{self.acceleration_margin:.0%})"
                )
        return None

    def _velocity_limit_text(self, j: int) -> str:
        return (
            f"limit {self.max_velocity[j]:.3f} rad/s "
            f"({math.degrees(self.velocity[j]):.0f} deg/s less {self.velocity_margin:.0%})"
        )

    def stretch_factor(self, times, positions, start=None, velocity_cap=None) -> float:
        """Smallest factor >= 1 by which to scale all times so the trajectory keeps within the
        velocity limits (or `velocity_cap` [rad/s] per joint where lower) and the acceleration
        limits. Velocities scale with 1/factor, accelerations with 1/factor^2."""
        vmax = self.max_velocity
        if velocity_cap is not None:
            vmax = np.minimum(vmax, np.asarray(velocity_cap, dtype=np.float64))
        rates = trajectory_rates(times, positions, start)
        factor = 1.0
        if len(rates.velocities):
            factor = max(factor, float(np.max(np.abs(rates.velocities) / vmax)))
        amax = self.max_acceleration
        if amax is not None and len(rates.accelerations):
            factor = max(factor, math.sqrt(float(np.max(np.abs(rates.accelerations) / amax))))
        return factor


# -- free space -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Volume:
    """A named axis-aligned box of the base frame [m]."""

    name: str
    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def __post_init__(self):
        lo, hi = np.asarray(self.low, float), np.asarray(self.high, float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError(f"{self.name}: corners must have 3 components")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo >= hi):
            raise ValueError(f"{self.name}: needs finite low < high, got {self.low} {self.high}")

    def contains(self, p, tolerance: float = _EPS) -> bool:
        p = np.asarray(p, dtype=np.float64)
        return bool(
            np.all(p >= np.asarray(self.low) - tolerance)
            and np.all(p <= np.asarray(self.high) + tolerance)
        )

    def over(self, p, tolerance: float = _EPS) -> bool:
        """Whether p's x and y are inside the box (its column)."""
        p = np.asarray(p, dtype=np.float64)
        return bool(
            np.all(p[:2] >= np.asarray(self.low[:2]) - tolerance)
            and np.all(p[:2] <= np.asarray(self.high[:2]) + tolerance)
        )

    def clamp(self, p) -> np.ndarray:
        return np.clip(np.asarray(p, dtype=np.float64), self.low, self.high)


@dataclass(frozen=True)
class Clamp:
    """Where a target went: the clamped position, the volume, and whether it moved."""

    position: np.ndarray
    volume: str
    clamped: bool


class CellVolumes:
    """The grasp point's free space: bins (below and above their rims) and the transit slab.

    Args:
        bins: the bins' interiors, inside their walls (x, y) from the lowest allowed grasp
            point to the top of the free space (z).
        transit_height: grasp-point height above which the gripper (and what it holds) clears
            every wall; the transit slab spans the bins' x/y extent from it to the top.
    """

    def __init__(self, bins: tuple[Volume, ...], transit_height: float):
        if not bins:
            raise ValueError("at least one bin volume is needed")
        names = [b.name for b in bins]
        if len(set(names)) != len(names) or "transit" in names:
            raise ValueError(f"bin volume names must be distinct and not 'transit': {names}")
        top = min(b.high[2] for b in bins)
        if not all(b.low[2] < transit_height < b.high[2] for b in bins):
            raise ValueError(
                f"transit_height {transit_height} must lie inside every bin volume's z range"
            )
        self.bins = tuple(bins)
        self.transit_height = float(transit_height)
        low = np.min([b.low for b in bins], axis=0)
        high = np.max([b.high for b in bins], axis=0)
        self.transit = Volume("transit", (low[0], low[1], transit_height), (high[0], high[1], top))

    @classmethod
    def from_config(cls, config) -> CellVolumes:
        """The volumes of an `IiwaControllerConfig`."""
        return cls(
            (
                Volume("right_bin", tuple(config.right_bin_low), tuple(config.right_bin_high)),
                Volume("left_bin", tuple(config.left_bin_low), tuple(config.left_bin_high)),
            ),
            config.transit_height,
        )

    @property
    def volumes(self) -> tuple[Volume, ...]:
        return (*self.bins, self.transit)

    @property
    def top(self) -> float:
        """Top of the free space [m]."""
        return float(self.transit.high[2])

    def volume_of(self, p, tolerance: float = _EPS) -> Volume | None:
        """The volume p is in (a bin before the transit slab), or None."""
        for volume in self.volumes:
            if volume.contains(p, tolerance):
                return volume
        return None

    def clamp(self, target, current=None) -> Clamp:
        """Clamp a grasp-point target into the free space.

        A target inside a volume stays. Otherwise it goes into: the bin whose column it is in
        (e.g. below that bin's floor limit or above its top); else the volume the arm is in
        (`current`, within 5 mm; the nearer one where the arm is in two: a bin and the transit
        slab overlap above the transit height); else the nearest volume. Below the transit
        height only the bins qualify, so a target on (or next to) a wall lands in a bin, never
        on the wall.
        """
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"position must be 3 finite numbers, got {target}")
        inside = self.volume_of(target)
        if inside is not None:
            return Clamp(target.copy(), inside.name, False)
        candidates = self.bins if target[2] < self.transit_height else self.volumes
        column = [b for b in self.bins if b.over(target)]
        if column:
            candidates = column
        elif current is not None:
            here = [v for v in candidates if v.contains(current, tolerance=0.005)]
            candidates = here or candidates
        chosen = min(candidates, key=lambda v: float(np.linalg.norm(v.clamp(target) - target)))
        return Clamp(chosen.clamp(target), chosen.name, True)

    def needs_route(self, start, goal, tolerance: float = 0.005) -> bool:
        """Whether the straight line start -> goal passes below the transit height (less
        `tolerance` [m], so an arm that stopped just short of it counts as there) outside a
        bin's column: over a wall, or from one bin into the other."""
        start, goal = np.asarray(start, float), np.asarray(goal, float)
        h = self.transit_height - tolerance
        if start[2] >= h and goal[2] >= h:
            return False
        # The part of the segment below h: s in [s0, s1] of [0, 1].
        s0, s1 = 0.0, 1.0
        if start[2] >= h:  # from above down into it
            s0 = (start[2] - h) / (start[2] - goal[2])
        elif goal[2] >= h:  # from below up out of it
            s1 = (h - start[2]) / (goal[2] - start[2])
        p0 = start + s0 * (goal - start)
        p1 = start + s1 * (goal - start)
        # A bin's column is convex: the low part is safe iff both its ends are in one column.
        return not any(b.over(p0) and b.over(p1) for b in self.bins)

    def route(self, start, goal, tolerance: float = 0.005) -> list[np.ndarray]:
        """Corner points from start to goal: [start, goal] for a straight move, else up to the
        transit height, across, and down. Legs shorter than 1 mm are left out, and an end
        within `tolerance` below the transit height counts as on it (see `needs_route`)."""
        start, goal = np.asarray(start, float), np.asarray(goal, float)
        if not self.needs_route(start, goal, tolerance):
            return [start, goal]
        h = self.transit_height
        up = start if start[2] >= h - tolerance else np.array([start[0], start[1], h])
        over = goal if goal[2] >= h - tolerance else np.array([goal[0], goal[1], h])
        points = [start]
        for p in (up, over):
            if np.linalg.norm(p - points[-1]) > 1e-3:
                points.append(p)
        if len(points) > 1 and np.linalg.norm(goal - points[-1]) <= 1e-3:
            points[-1] = goal
        else:
            points.append(goal)
        return points


#: Shortest and longest time a hold (stop) trajectory takes to reach its point [s].
HOLD_MIN_S = 0.05
HOLD_MAX_S = 5.0
#: The hold is timed for a gap this much larger than the estimated one: the arm's setpoint
#: is known only up to the message's latency and the arm's own interpolation.
HOLD_GAP_FACTOR = 1.5


def hold_duration(limits, q_hold, setpoint=None) -> tuple[float, str | None]:
    """(time_from_start, refusal) of a one-point hold at `q_hold` for an arm whose current
    setpoint is `setpoint` (None: at q_hold). The shortest time from HOLD_MIN_S up (x1.5
    steps) that keeps the way from the setpoint (its gap to q_hold times HOLD_GAP_FACTOR)
    inside `limits`: a stopped arm lags its setpoint (blocked, pushed), and a hold at the
    measured position 50 ms later would ask for a jump a controller refuses. Refusal: the
    hold is unsafe even at HOLD_MAX_S."""
    q_hold = np.asarray(q_hold, dtype=np.float64)
    start = q_hold
    if setpoint is not None:
        start = q_hold + HOLD_GAP_FACTOR * (np.asarray(setpoint, dtype=np.float64) - q_hold)
    duration = HOLD_MIN_S
    while True:
        refusal = limits.violation([duration], [q_hold], start, [np.zeros(NUM_JOINTS)])
        if refusal is None or duration >= HOLD_MAX_S:
            return duration, refusal
        duration = min(duration * 1.5, HOLD_MAX_S)
