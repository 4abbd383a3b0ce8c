"""The hinge motor of the resettable bin, behind one small interface (`BinMotor`).

Backends: `SimBinMotor` (the simulated cell's `reset_bin/motor` / `reset_bin/state` topics;
the ROS plumbing is injected, so this class has no rclpy import) and
`mtopt_reset_bin.serial_motor.SerialBinMotor` (a serial motor controller, see README.md).
"""

from __future__ import annotations

import abc
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class MotorTimeout(RuntimeError):
    """No usable answer from the motor controller: none in time, a garbled one, an I/O error,
    or (sim) a stale state."""


class MotorFault(RuntimeError):
    """The motor controller refused a command or reports a fault; the message says why."""


@dataclass(frozen=True)
class MotorReading:
    """One state reading of the hinge motor."""

    angle: float  # hinge angle [rad]
    velocity: float  # hinge velocity [rad/s]
    fault: bool  # the controller reports a fault
    message: str = ""  # fault description ("" when no fault)


class BinMotor(abc.ABC):
    """A hinge motor that moves to an angle at a speed limit and reports its state."""

    @abc.abstractmethod
    def command(self, angle: float, velocity: float) -> None:
        """Move to `angle` [rad] at up to `velocity` [rad/s] (returns at once).

        Raises MotorTimeout if the controller does not answer, MotorFault if it refuses.
        """

    @abc.abstractmethod
    def read(self) -> MotorReading:
        """Current state. Raises MotorTimeout if no (fresh) state is available."""

    def clear_fault(self) -> None:  # noqa: B027 - optional for backends without latched faults
        """Clear a latched controller fault, if the backend has such a thing."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release the backend's resources."""


def check_command(angle: float, velocity: float) -> None:
    """Reject non-finite or non-positive-speed commands (every backend uses this)."""
    if not math.isfinite(angle):
        raise ValueError(f"motor angle must be finite, got {angle}")
    if not (math.isfinite(velocity) and velocity > 0):
        raise ValueError(f"motor velocity must be a positive finite number, got {velocity}")


class SimBinMotor(BinMotor):
    """The simulated cell's hinge motor.

    Args:
        publish: sends one command (angle, max_velocity) on `reset_bin/motor`.
        state_timeout: a state older than this [s] counts as no state (MotorTimeout).
        clock: monotonic time source [s].

    The node calls `on_state` for every `reset_bin/state` message.
    """

    def __init__(
        self,
        publish: Callable[[float, float], None],
        state_timeout: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not state_timeout > 0:
            raise ValueError(f"state_timeout must be > 0, got {state_timeout}")
        self._publish = publish
        self._state_timeout = state_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._reading: MotorReading | None = None
        self._stamp = 0.0

    def on_state(self, angle: float, velocity: float, fault: bool, message: str) -> None:
        """Store one `reset_bin/state` sample."""
        with self._lock:
            self._reading = MotorReading(float(angle), float(velocity), bool(fault), str(message))
            self._stamp = self._clock()

    def command(self, angle: float, velocity: float) -> None:
        check_command(angle, velocity)
        self._publish(float(angle), float(velocity))

    def read(self) -> MotorReading:
        with self._lock:
            reading, stamp = self._reading, self._stamp
        if reading is None:
            raise MotorTimeout("no reset_bin/state received yet")
        age = self._clock() - stamp
        if age > self._state_timeout:
            raise MotorTimeout(f"reset_bin/state is {age:.2f} s old")
        return reading
