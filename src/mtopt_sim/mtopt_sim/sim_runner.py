"""`SimCellRunner`: paces a `SimCell` against the wall clock and schedules its outputs.

No ROS here: `sim_cell_node` is the thin ROS glue around this class. The runner owns the cell
and must be used from one thread (the cell's renderer is thread-bound).

Two modes:
* `realtime`: sim time follows the wall clock (re-anchored when it falls more than
  `max_lag` behind, e.g. on an overloaded machine, so it never tries to catch up in a burst).
* `fast`: while something moves (a joint trajectory, the gripper, the bin motor, and
  `settle_time` after the last command or motion), physics runs as fast as the CPU allows;
  when idle, time runs in real time (the clock never stops, so timeouts keep working).

Outputs are emitted on a sim-time schedule through the `RunnerSink` callbacks, at the instant
they are due (so a 10 Hz camera stream is 10 frames per simulated second in either mode).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mtopt_iiwa.safety import JointLimits
from mtopt_sim.cell import SimCell
from mtopt_sim.scene import CAMERA_NAMES, POLICY_CAMERA_NAMES

MODES = ("realtime", "fast")


@dataclass(frozen=True)
class RunnerConfig:
    """Pacing and output rates (rates in sim-time Hz)."""

    mode: str = "realtime"
    camera_rate_hz: float = 10.0
    camera_width: int = 128
    camera_height: int = 128
    cameras: tuple[str, ...] = CAMERA_NAMES
    joint_state_rate_hz: float = 100.0  # also gripper and bin-motor state
    clock_rate_hz: float = 200.0
    oracle_rate_hz: float = 2.0  # 0 disables the oracle output
    settle_time: float = 0.3  # fast mode: keep stepping this long after motion ends [s]
    fast_chunk_wall: float = 0.02  # fast mode: wall time per tick before yielding [s]
    max_lag: float = 0.25  # realtime: re-anchor when sim time lags the wall more [s]
    #: Limits a commanded joint trajectory must keep, as a real arm's controller enforces its
    #: own (None: unchecked): the iiwa14's position and velocity limits, without the arm
    #: controller's margins. Accelerations are the controller's to keep (it plans with them):
    #: here a trajectory starts from the lagging setpoint, so its first corner would count a
    #: spurious acceleration (a plan within the limits could be refused).
    joint_limits: JointLimits | None = field(
        default_factory=lambda: JointLimits(acceleration=None)
    )
    #: A trajectory starts from the commanded position; its first step is excused this much
    #: [rad]: the measured position a client plans from lags the setpoint (about 0.04 rad at
    #: full speed), a jump beyond it at t = 0 is refused.
    trajectory_start_tolerance: float = 0.1

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("camera_rate_hz", "joint_state_rate_hz", "clock_rate_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.oracle_rate_hz < 0:
            raise ValueError(f"oracle_rate_hz must be >= 0, got {self.oracle_rate_hz}")
        if not (8 <= self.camera_width <= 640 and 8 <= self.camera_height <= 640):
            raise ValueError(
                f"camera size must be within 8..640, got {self.camera_width}x{self.camera_height}"
            )
        unknown = set(self.cameras) - set(POLICY_CAMERA_NAMES)
        if unknown or not self.cameras:
            raise ValueError(f"cameras must be a non-empty subset of {POLICY_CAMERA_NAMES}")
        for name in ("settle_time", "fast_chunk_wall", "max_lag"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.trajectory_start_tolerance < 1:
            raise ValueError(
                f"trajectory_start_tolerance must be in [0, 1) rad, got "
                f"{self.trajectory_start_tolerance}"
            )


class RunnerSink(Protocol):
    """Receives the runner's outputs; `stamp` is sim time [s]."""

    def on_clock(self, stamp: float) -> None: ...
    def on_joint_state(self, stamp: float) -> None: ...
    def on_camera(self, stamp: float, name: str, image: np.ndarray) -> None: ...
    def on_oracle(self, stamp: float) -> None: ...


class _Stream:
    def __init__(self, rate_hz: float, start: float):
        self.period = 1.0 / rate_hz if rate_hz > 0 else math.inf
        self.next = start

    def due(self, t: float) -> bool:
        if t + 1e-9 < self.next:
            return False
        self.next += self.period
        if self.next <= t:  # far behind (e.g. after a respawn): do not emit a burst
            self.next = t + self.period
        return True


class SimCellRunner:
    """Drives a `SimCell` in real time or as fast as possible, emitting outputs on schedule."""

    def __init__(self, cell: SimCell, config: RunnerConfig, sink: RunnerSink):
        config.validate()
        self.cell = cell
        self.config = config
        self.sink = sink
        now = cell.time
        self._joint = _Stream(config.joint_state_rate_hz, now)
        self._camera = _Stream(config.camera_rate_hz, now)
        self._clock = _Stream(config.clock_rate_hz, now)
        self._oracle = _Stream(config.oracle_rate_hz, now)
        self._settle_until = now
        self._anchor(time.monotonic())
        self.steps = 0

    # ----------------------------------------------------------------------------- commands
    def command_joint_trajectory(self, times_from_now, positions) -> None:
        """Start a joint trajectory now; one beyond `config.joint_limits` raises
        `mtopt_iiwa.safety.JointLimitError` (a ValueError) and changes nothing."""
        self.cell.set_joint_trajectory(
            times_from_now,
            positions,
            limits=self.config.joint_limits,
            start_tolerance=self.config.trajectory_start_tolerance,
        )
        self._kick()

    def command_gripper(self, opening: float, max_effort: float) -> None:
        self.cell.set_gripper(opening, max_effort)
        self._kick()

    def command_bin_motor(self, angle: float, max_velocity: float) -> None:
        self.cell.set_bin_motor(angle, max_velocity)
        self._kick()

    def respawn(self, seed: int | None = None) -> list[str]:
        rng = np.random.default_rng(seed) if seed is not None else None
        names = self.cell.respawn(rng)
        self._anchor(time.monotonic())
        return names

    def _kick(self) -> None:
        self._settle_until = self.cell.time + self.config.settle_time

    # ------------------------------------------------------------------------------ pacing
    def _anchor(self, wall: float) -> None:
        self._wall0 = wall
        self._sim0 = self.cell.time

    @property
    def busy(self) -> bool:
        """Something moves (or just stopped moving): fast mode steps flat out."""
        cell = self.cell
        fingers = float(np.max(np.abs(cell.data.qvel[cell.finger_dof_adr])))
        if cell.arm_busy or cell.hinge_busy or fingers > 1e-3:
            self._kick()
            return True
        return cell.time < self._settle_until

    def tick(self, wall: float | None = None) -> None:
        """Advance the simulation for this moment of wall time and emit what is due."""
        explicit = wall is not None
        wall = wall if explicit else time.monotonic()
        cfg = self.config
        if cfg.mode == "fast" and self.busy:
            deadline = time.monotonic() + cfg.fast_chunk_wall
            while time.monotonic() < deadline:
                self._advance_to(self.cell.time + 10 * self.cell.model.opt.timestep)
                if not self.busy:
                    break
            self._anchor(wall if explicit else time.monotonic())
            return
        target = self._sim0 + (wall - self._wall0)
        if target - self.cell.time > cfg.max_lag:
            # Too far behind (overloaded machine): slow the sim down rather than burst.
            self._sim0 = self.cell.time - (wall - self._wall0) + cfg.max_lag
            target = self.cell.time + cfg.max_lag
        self._advance_to(target)

    def _advance_to(self, target: float) -> None:
        cell = self.cell
        dt = cell.model.opt.timestep
        while cell.time + dt / 2 <= target:
            next_event = min(
                self._joint.next, self._camera.next, self._clock.next, self._oracle.next, target
            )
            n = max(1, int(math.floor((next_event - cell.time) / dt + 1e-6)))
            n = min(n, max(1, int(math.floor((target - cell.time) / dt + 1e-6))))
            cell.step_physics(n)
            self.steps += n
            self._emit()

    def _emit(self) -> None:
        t = self.cell.time
        if self._clock.due(t):
            self.sink.on_clock(t)
        if self._joint.due(t):
            self.sink.on_joint_state(t)
        if self._camera.due(t):
            cfg = self.config
            for name in cfg.cameras:
                image = self.cell.render(name, cfg.camera_width, cfg.camera_height)
                self.sink.on_camera(t, name, image)
        if self._oracle.due(t):
            self.sink.on_oracle(t)
