"""Parameters of the reset-bin node: one dataclass, the defaults of its ROS parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtopt_bridge.params import ConfigError

BACKENDS = ("sim", "serial")


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
        if self.comm_timeout < self.request_timeout:
            raise ConfigError(
                f"comm_timeout ({self.comm_timeout}) must be >= request_timeout "
                f"({self.request_timeout})"
            )
        return self
