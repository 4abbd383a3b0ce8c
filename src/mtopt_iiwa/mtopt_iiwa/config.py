"""Parameters of the iiwa controller node: one dataclass, the defaults of its ROS parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from mtopt_bridge.params import ConfigError

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
    #: Workspace box for the grasp point, base frame [m]. Default: the MuJoCo cell's workspace
    #: (mtopt_sim.cell.WorkspaceBox: the two bins, x 0.42..0.70, y -0.30..0.30, from 0.025 m
    #: above the bin floor (z 0.01) to 0.41 m). All of it is reachable pointing down at any yaw
    #: (the two far top corners only to within 0.6 mm).
    workspace_low: tuple[float, ...] = (0.42, -0.30, 0.035)
    workspace_high: tuple[float, ...] = (0.70, 0.30, 0.41)
    #: Target yaw limits [rad]; a parallel gripper is symmetric under half a turn, so
    #: [-pi/2, pi/2] covers every grasp (the MuJoCo cell uses the same limits).
    yaw_min: float = -math.pi / 2
    yaw_max: float = math.pi / 2
    #: Joint positions of `iiwa/go_home` [rad], A1..A7. Default: the MuJoCo cell's home (grasp
    #: point at 0.32, 0, 0.48: outside the workspace, clear of the tilting bin).
    home_q: tuple[float, ...] = (0.0, -0.186, 0.0, -1.856, 0.0, 1.472, 0.0)
    #: Joint positions of `iiwa/present` [rad], A1..A7: the grading pose taken after an episode,
    #: before the success detector's final images. Default: the MuJoCo cell's present pose
    #: (mtopt_sim.robot.RobotConfig.present_qpos; grasp point at about 0.18, -0.37, 0.62,
    #: pointing down, fingers closing across the right_shoulder camera's line of sight: the
    #: gripper and what it holds close to that camera, the bins left visible to the others).
    present_q: tuple[float, ...] = (-0.491, 0.068, -0.681, -1.279, 0.044, 1.809, 1.210)
    #: Preferred posture for the redundant joint (IK null space) [rad], A1..A7.
    rest_q: tuple[float, ...] = (0.0, 0.20, 0.0, -1.75, 0.0, 1.19, 0.0)
    #: IK keeps joints this far inside the URDF limits [rad].
    joint_limit_margin: float = 0.02
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
    #: |yaw change| / max_yaw_speed), stretched so no joint exceeds max_joint_velocity.
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
            ("workspace_low", 3),
            ("workspace_high", 3),
            ("rest_q", 7),
            ("home_q", 7),
            ("present_q", 7),
        ):
            value = getattr(self, name)
            if len(value) != length or not all(math.isfinite(v) for v in value):
                raise ConfigError(f"{name} must be {length} finite numbers, got {value}")
        for axis, (lo, hi) in enumerate(zip(self.workspace_low, self.workspace_high, strict=True)):
            if lo > hi:
                raise ConfigError(
                    f"workspace_low[{axis}]={lo} is above workspace_high[{axis}]={hi}"
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
            if f.name in ("yaw_min", "yaw_max") or not isinstance(value, float):
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
