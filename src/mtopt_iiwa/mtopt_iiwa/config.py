"""Parameters of the iiwa controller node: one dataclass, the defaults of its ROS parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from mtopt_bridge.params import ConfigError
from mtopt_iiwa.safety import (
    IIWA14_ACCELERATION_LIMITS,
    IIWA14_POSITION_LIMITS,
    IIWA14_VELOCITY_LIMITS,
)

#: Float parameters validated on their own (not "positive").
_CHECKED_APART = (
    "yaw_min",
    "yaw_max",
    "transit_height",
    "joint_position_margin",
    "joint_velocity_margin",
    "joint_acceleration_margin",
)

#: ROS joint names as the iiwa_ros2 driver (ICube) and the MuJoCo cell (`mtopt_sim`) use them.
DEFAULT_JOINT_NAMES = tuple(f"joint_a{i}" for i in range(1, 8))


@dataclass(frozen=True)
class IiwaControllerConfig:
    """Controller parameters (ROS parameter names = field names). Lengths in m, angles in rad."""

    #: Joint names on `iiwa/joint_states` and in the JointTrajectory, A1..A7 (base to flange).
    joint_names: tuple[str, ...] = DEFAULT_JOINT_NAMES
    #: Grasp point in the flange link frame (lbr_iiwa_link_7) [m]. Default: the MuJoCo cell's
    #: gripper TCP (flange 0.045 m + pad centre 0.1275 m along the tool axis).
    tool_offset: tuple[float, ...] = (0.0, 0.0, 0.1725)
    #: Free space of the grasp point, base frame [m] (`mtopt_iiwa.safety.CellVolumes`):
    #: each bin's interior as a box (x, y inside its walls, less a clearance for the fingers;
    #: z from just above its floor to the top of the free space), and the transit height
    #: above which the gripper, and what it holds, clears every wall: moves between the bins
    #: or over a wall go up to it, across, and down. Defaults: the MuJoCo cell, numbers copied
    #: from mtopt_sim.scene.SceneConfig (base frame = world frame): bins centred at x 0.56,
    #: y -0.155 (right) / +0.155 (left), inner size 0.32 x 0.28 m (right) and 0.26 x 0.28 m
    #: (left), walls 0.01 m thick, floor top z 0.01, rims z 0.11; the chute over the two middle
    #: walls reaches z 0.118 and comes down to y -0.035 in the right bin. Interiors: right
    #: x 0.40..0.72, y -0.295..-0.015; left x 0.43..0.69, y 0.015..0.295. The boxes keep
    #: 0.02 m from the walls (the right one 0.005 m from the chute's lower edge) and span z
    #: 0.035 (0.025 m above the floor) to 0.41; the transit height 0.20 leaves the fingertips
    #: (0.0225 m below the grasp point) 0.06 m above the chute for what the gripper holds.
    right_bin_low: tuple[float, ...] = (0.42, -0.275, 0.035)
    right_bin_high: tuple[float, ...] = (0.70, -0.04, 0.41)
    left_bin_low: tuple[float, ...] = (0.45, 0.035, 0.035)
    left_bin_high: tuple[float, ...] = (0.67, 0.275, 0.41)
    transit_height: float = 0.20
    #: Target yaw limits [rad]; a parallel gripper is symmetric under half a turn, so
    #: [-pi/2, pi/2] covers every grasp (the MuJoCo cell uses the same limits).
    yaw_min: float = -math.pi / 2
    yaw_max: float = math.pi / 2
    #: Joint positions of `iiwa/go_home` [rad], A1..A7. Default: the MuJoCo cell's home (grasp
    #: point at 0.32, 0, 0.48: outside the free space, clear of the tilting bin).
    home_q: tuple[float, ...] = (0.0, -0.186, 0.0, -1.856, 0.0, 1.472, 0.0)
    #: Joint positions of `iiwa/present` [rad], A1..A7: the grading pose taken after an episode,
    #: before the success detector's final images. Default: the MuJoCo cell's present pose
    #: (mtopt_sim.robot.RobotConfig.present_qpos; grasp point at about 0.18, -0.37, 0.62,
    #: pointing down, fingers closing across the right_shoulder camera's line of sight: the
    #: gripper and what it holds close to that camera, the bins left visible to the others).
    present_q: tuple[float, ...] = (-0.491, 0.068, -0.681, -1.279, 0.044, 1.809, 1.210)
    #: Preferred posture for the redundant joint (IK null space) [rad], A1..A7.
    rest_q: tuple[float, ...] = (0.0, 0.20, 0.0, -1.75, 0.0, 1.19, 0.0)
    #: IK keeps joints this far inside the joint limits (the URDF's and
    #: joint_position_limits) [rad].
    joint_limit_margin: float = 0.02
    #: Joint limits A1..A7, checked on every trajectory before it is published
    #: (`mtopt_iiwa.safety.JointLimits`): symmetric position limits [rad], velocity limits
    #: [rad/s] (defaults: the KUKA LBR iiwa 14 R820 data sheet, +-170, 120, 170, 120, 170, 120,
    #: 175 deg and 85, 85, 100, 75, 130, 135, 135 deg/s) and acceleration limits [rad/s^2]
    #: (KUKA publishes none; default 10, the lbr_fri_ros2_stack iiwa14 MoveIt configuration's).
    joint_position_limits: tuple[float, ...] = IIWA14_POSITION_LIMITS
    joint_velocity_limits: tuple[float, ...] = IIWA14_VELOCITY_LIMITS
    joint_acceleration_limits: tuple[float, ...] = IIWA14_ACCELERATION_LIMITS
    #: Margins of that check: positions must stay joint_position_margin [rad] inside the
    #: position limits (at most joint_limit_margin, which the IK keeps), velocities and
    #: accelerations below (1 - margin) times their limits. Plans are timed to satisfy them.
    joint_position_margin: float = 0.01
    joint_velocity_margin: float = 0.1
    joint_acceleration_margin: float = 0.1
    #: Move result tolerances: REACHED when the grasp point is this close to the target.
    position_tolerance: float = 0.002
    yaw_tolerance: float = 0.02
    #: IK solve tolerance [m]; a final IK error above reach_tolerance means the target was out
    #: of reach pointing down (or beyond a joint limit): the move is reported CLAMPED.
    ik_tolerance: float = 1e-4
    reach_tolerance: float = 0.001
    #: Cartesian sampling of the straight-line path (one IK waypoint per step).
    waypoint_spacing: float = 0.01
    waypoint_yaw_spacing: float = 0.05
    #: Default motion time = max(min_duration, distance / max_linear_speed,
    #: |yaw change| / max_yaw_speed), stretched so no joint exceeds max_joint_velocity (nor
    #: its checked velocity limit, nor its checked acceleration limit).
    min_duration: float = 0.3
    max_linear_speed: float = 0.25
    max_yaw_speed: float = 1.5
    max_joint_velocity: float = 1.0
    #: Default timeout of a move = motion time + timeout_margin [s].
    timeout_margin: float = 3.0
    #: BLOCKED: after the motion time, joints moved less than stall_joint_threshold [rad]
    #: during stall_window [s] while short of the target.
    stall_window: float = 0.3
    stall_joint_threshold: float = 0.001
    #: Metres per radian of yaw when measuring progress.
    yaw_weight: float = 0.1
    #: No joint state for this long during a move (or before one starts) is a FAULT [s].
    joint_state_timeout: float = 0.5
    #: Action feedback rate [Hz].
    feedback_rate: float = 20.0
    #: Gripper: largest opening [m] (the MuJoCo cell gripper: 0.10), REACHED tolerance [m],
    #: settle detection (opening changes less than threshold [m] over window [s]), timeout [s].
    gripper_max_opening: float = 0.10
    gripper_tolerance: float = 0.003
    gripper_settle_window: float = 0.25
    gripper_settle_threshold: float = 0.0005
    gripper_timeout: float = 3.0
    #: Largest grip force passed on to gripper/command [N] (the MuJoCo cell's finger limit:
    #: 60); larger requests are clamped to it, negative ones to 0 (= the gripper's default).
    gripper_max_effort: float = 60.0

    def validate(self) -> IiwaControllerConfig:
        """Check every field; raise ConfigError naming the first bad parameter."""
        if len(self.joint_names) != 7 or len(set(self.joint_names)) != 7:
            raise ConfigError(f"joint_names must be 7 distinct names, got {self.joint_names}")
        if not all(isinstance(n, str) and n for n in self.joint_names):
            raise ConfigError(f"joint_names must be non-empty strings, got {self.joint_names}")
        for name, length in (
            ("tool_offset", 3),
            ("right_bin_low", 3),
            ("right_bin_high", 3),
            ("left_bin_low", 3),
            ("left_bin_high", 3),
            ("rest_q", 7),
            ("home_q", 7),
            ("present_q", 7),
            ("joint_position_limits", 7),
            ("joint_velocity_limits", 7),
            ("joint_acceleration_limits", 7),
        ):
            value = getattr(self, name)
            if len(value) != length or not all(math.isfinite(v) for v in value):
                raise ConfigError(f"{name} must be {length} finite numbers, got {value}")
        for name in (
            "joint_position_limits",
            "joint_velocity_limits",
            "joint_acceleration_limits",
        ):
            if not all(v > 0 for v in getattr(self, name)):
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for volume in ("right_bin", "left_bin"):
            low, high = getattr(self, f"{volume}_low"), getattr(self, f"{volume}_high")
            for axis, (lo, hi) in enumerate(zip(low, high, strict=True)):
                if not lo < hi:
                    raise ConfigError(
                        f"{volume}_low[{axis}]={lo} must be below {volume}_high[{axis}]={hi}"
                    )
        if all(
            self.right_bin_low[a] < self.left_bin_high[a]
            and self.left_bin_low[a] < self.right_bin_high[a]
            for a in range(3)
        ):
            raise ConfigError(
                "right_bin_low/high and left_bin_low/high overlap: each bin's box must lie "
                "inside its own walls"
            )
        for volume in ("right_bin", "left_bin"):
            low, high = getattr(self, f"{volume}_low")[2], getattr(self, f"{volume}_high")[2]
            if not (math.isfinite(self.transit_height) and low < self.transit_height < high):
                raise ConfigError(
                    f"transit_height must lie between {volume}_low[2]={low} and "
                    f"{volume}_high[2]={high}, got {self.transit_height}"
                )
        if not 0 <= self.joint_position_margin <= self.joint_limit_margin:
            raise ConfigError(
                f"joint_position_margin must be >= 0 and <= joint_limit_margin "
                f"({self.joint_limit_margin}: the IK keeps that far inside), got "
                f"{self.joint_position_margin}"
            )
        if self.joint_limit_margin >= min(self.joint_position_limits):
            raise ConfigError(
                f"joint_limit_margin ({self.joint_limit_margin}) must be below every "
                f"joint_position_limits value"
            )
        for name in ("joint_velocity_margin", "joint_acceleration_margin"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be a fraction in [0, 1), got {getattr(self, name)}"
                )
        if not (math.isfinite(self.yaw_min) and math.isfinite(self.yaw_max)) or not (
            -math.pi <= self.yaw_min < self.yaw_max <= math.pi
        ):
            raise ConfigError(
                f"yaw_min/yaw_max must satisfy -pi <= yaw_min < yaw_max <= pi, got "
                f"{self.yaw_min}, {self.yaw_max}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _CHECKED_APART or not isinstance(value, float):
                continue
            if not (math.isfinite(value) and value > 0):
                if f.name == "joint_limit_margin" and value == 0:
                    continue
                raise ConfigError(f"{f.name} must be a positive finite number, got {value}")
        if self.reach_tolerance < self.ik_tolerance:
            raise ConfigError(
                f"reach_tolerance ({self.reach_tolerance}) must be >= ik_tolerance "
                f"({self.ik_tolerance})"
            )
        return self
