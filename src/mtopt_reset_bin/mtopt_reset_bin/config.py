"""Parameters of the reset-bin node: one dataclass, the defaults of its ROS parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtopt_bridge.params import ConfigError

BACKENDS = ("sim", "serial")
#: Joint names of the arm on `iiwa/joint_states`, A1..A7 (iiwa_ros2 / MuJoCo cell names; the
#: same as `joint_names` of config/iiwa.yaml).
DEFAULT_JOINT_NAMES = tuple(f"joint_a{i}" for i in range(1, 8))
#: The arm's home posture (`home_q` of config/iiwa.yaml: gripper at 0.32, 0, 0.48, clear of the
#: tilting bin), where the collector parks the arm (`iiwa/go_home`) before every reset.
HOME_Q = (0.0, -0.186, 0.0, -1.856, 0.0, 1.472, 0.0)


@dataclass(frozen=True)
class ResetBinConfig:
    """Reset-bin parameters (ROS parameter names = field names). Angles in rad, times in s."""

    #: Motor backend: "sim" (topics reset_bin/motor + reset_bin/state of the simulated cell)
    #: or "serial" (a motor controller on serial_port, protocol in the package README).
    backend: str = "sim"
    #: Serial backend: device path or pyserial URL, line speed, per-request reply timeout,
    #: and whether every line carries a `*HH` checksum.
    serial_port: str = "/dev/ttyUSB0"
    serial_baudrate: int = 115200
    request_timeout: float = 0.2
    serial_checksum: bool = False
    #: Default tilt (a goal's tilt_angle <= 0 selects it), level angle, and the hinge range
    #: goals must stay in. Defaults: the MuJoCo cell (dump at 2.65, hinge range 0..3.0).
    tilt_angle: float = 2.65
    level_angle: float = 0.0
    min_angle: float = 0.0
    max_angle: float = 3.0
    #: Default time to hold the tilt (a goal's hold_time < 0 selects it), after the shakes; the
    #: hold also lasts until one motor reading confirms the tilt.
    hold_time: float = 0.4
    #: At the tilt, swing back by shake_amplitude and up again this many times, so nothing
    #: stays wedged in a corner (0 = no shaking). Part of the "hold" phase.
    shakes: int = 3
    shake_amplitude: float = 0.35
    #: Hinge speed limit sent with every move [rad/s].
    velocity: float = 2.5
    #: A phase ends when the measured angle is this close to its target.
    angle_tolerance: float = 0.03
    #: Default timeout of a whole reset (a goal's timeout <= 0 selects it).
    timeout: float = 10.0
    #: No answer / no fresh state from the motor for this long -> TIMEOUT.
    comm_timeout: float = 1.0
    #: Motor polling (and feedback) rate during a reset [Hz].
    poll_rate: float = 20.0
    #: Goal bounds: a goal asking for more tilt, hold time or timeout than these (or a
    #: non-finite value) is rejected. The configured defaults must lie within them.
    max_tilt_angle: float = 2.8
    max_hold_time: float = 5.0
    max_timeout: float = 20.0
    #: Arm interlock: a goal is accepted only when fresh `iiwa/joint_states` show the arm within
    #: `safe_pose_tolerance` (every joint) of one of `safe_poses`, and a running reset stops and
    #: returns the bin when that stops being true. false = no arm check (a bench setup without
    #: an arm only: nothing then keeps the tilting bin clear of the arm).
    interlock: bool = True
    #: Safe arm postures: a flat list of 7*k joint angles (A1..A7 of pose 1, then of pose 2, ...)
    #: in the order of `joint_names`. Default: the home posture (`home_q` of config/iiwa.yaml).
    safe_poses: tuple[float, ...] = HOME_Q
    #: Largest deviation of any joint from a safe pose that still counts as at it [rad].
    safe_pose_tolerance: float = 0.1
    #: Joint states older than this [s] (wall clock since receipt) count as none.
    joint_state_timeout_s: float = 1.0
    #: Joint names on `iiwa/joint_states`, A1..A7 (as `joint_names` of config/iiwa.yaml).
    joint_names: tuple[str, ...] = DEFAULT_JOINT_NAMES

    def validate(self) -> ResetBinConfig:
        """Check every field; raise ConfigError naming the first bad parameter."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "serial" and not self.serial_port:
            raise ConfigError("serial_port must be set for the serial backend")
        if self.serial_baudrate <= 0:
            raise ConfigError(f"serial_baudrate must be > 0, got {self.serial_baudrate}")
        for name in (
            "request_timeout",
            "velocity",
            "angle_tolerance",
            "timeout",
            "comm_timeout",
            "poll_rate",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {value}")
        for name in ("tilt_angle", "level_angle", "min_angle", "max_angle", "hold_time"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be finite, got {getattr(self, name)}")
        if self.hold_time < 0:
            raise ConfigError(f"hold_time must be >= 0, got {self.hold_time}")
        if self.shakes < 0:
            raise ConfigError(f"shakes must be >= 0, got {self.shakes}")
        if not (math.isfinite(self.shake_amplitude) and self.shake_amplitude >= 0):
            raise ConfigError(f"shake_amplitude must be >= 0, got {self.shake_amplitude}")
        if self.min_angle > self.max_angle:
            raise ConfigError(f"min_angle {self.min_angle} is above max_angle {self.max_angle}")
        for name in ("tilt_angle", "level_angle"):
            value = getattr(self, name)
            if not self.min_angle <= value <= self.max_angle:
                raise ConfigError(
                    f"{name} {value} is outside [min_angle, max_angle] = "
                    f"[{self.min_angle}, {self.max_angle}]"
                )
        self._validate_goal_bounds()
        self._validate_interlock()
        if self.comm_timeout < self.request_timeout:
            raise ConfigError(
                f"comm_timeout ({self.comm_timeout}) must be >= request_timeout "
                f"({self.request_timeout})"
            )
        return self

    def _validate_goal_bounds(self) -> None:
        for name in ("max_tilt_angle", "max_hold_time", "max_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {value}")
        if not self.min_angle < self.max_tilt_angle <= self.max_angle:
            raise ConfigError(
                f"max_tilt_angle {self.max_tilt_angle} must be in (min_angle, max_angle] = "
                f"({self.min_angle}, {self.max_angle}]"
            )
        for name, bound in (
            ("tilt_angle", "max_tilt_angle"),
            ("hold_time", "max_hold_time"),
            ("timeout", "max_timeout"),
        ):
            if getattr(self, name) > getattr(self, bound):
                raise ConfigError(
                    f"{name} {getattr(self, name)} is above {bound} {getattr(self, bound)}"
                )

    def _validate_interlock(self) -> None:
        if len(self.joint_names) != 7 or len(set(self.joint_names)) != 7:
            raise ConfigError(f"joint_names must be 7 distinct names, got {self.joint_names}")
        if not all(isinstance(n, str) and n for n in self.joint_names):
            raise ConfigError(f"joint_names must be non-empty strings, got {self.joint_names}")
        poses = self.safe_poses
        if not poses or len(poses) % 7:
            raise ConfigError(
                f"safe_poses must be a flat list of 7*k joint angles (k >= 1), got "
                f"{len(poses)} values"
            )
        if not all(isinstance(q, (int, float)) and math.isfinite(q) for q in poses):
            raise ConfigError(f"safe_poses must be finite numbers, got {list(poses)}")
        tolerance = self.safe_pose_tolerance
        if not (math.isfinite(tolerance) and 0 < tolerance <= 0.5):
            raise ConfigError(f"safe_pose_tolerance must be in (0, 0.5] rad, got {tolerance}")
        timeout = self.joint_state_timeout_s
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(
                f"joint_state_timeout_s must be a positive finite number, got {timeout}"
            )

    def safe_pose_list(self) -> list[tuple[float, ...]]:
        """`safe_poses` as k tuples of 7 joint angles."""
        poses = [float(q) for q in self.safe_poses]
        return [tuple(poses[i : i + 7]) for i in range(0, len(poses), 7)]
