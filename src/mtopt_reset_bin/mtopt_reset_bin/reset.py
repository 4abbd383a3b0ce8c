"""The bin reset sequence (tilt, hold, return) on any `BinMotor`, with timeouts, the goal bounds
(`resolve_goal`) and the arm-interlock stop (no ROS here)."""

from __future__ import annotations

import contextlib
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mtopt_reset_bin.config import ResetBinConfig
from mtopt_reset_bin.motor import BinMotor, MotorFault, MotorReading, MotorTimeout


class ResetOutcome(enum.IntEnum):
    """Values of ResetBin.Result.outcome (CANCELED is reported through the goal status)."""

    DONE = 0
    TIMEOUT = 1
    FAULT = 2
    CANCELED = 100


@dataclass(frozen=True)
class ResetResult:
    """How a reset ended."""

    outcome: ResetOutcome
    final_angle: float  # last measured hinge angle [rad] (NaN if never read)
    message: str


class _Abort(Exception):
    """Ends the sequence early with a result."""

    def __init__(self, outcome: ResetOutcome, message: str, return_bin: bool = False):
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.return_bin = return_bin  # bring the bin back to level and watch it get there


class GoalRejected(ValueError):
    """A reset goal outside the configured bounds; the message says which value and why."""


@dataclass(frozen=True)
class ResetGoal:
    """A reset goal's physical values (defaults resolved, bounds checked)."""

    tilt_angle: float  # [rad]
    hold_time: float  # [s]
    timeout: float  # [s]


def resolve_goal(
    config: ResetBinConfig, tilt_angle: float, hold_time: float, timeout: float
) -> ResetGoal:
    """A ResetBin goal's values -> physical values, as the action file defines them:
    tilt_angle <= 0, hold_time < 0 and timeout <= 0 select the configured defaults.

    Raises GoalRejected for a non-finite value, a tilt above `max_tilt_angle` (or below
    `min_angle`), a hold time above `max_hold_time` or a timeout above `max_timeout`.
    """
    cfg = config
    for name, value in (
        ("tilt_angle", tilt_angle),
        ("hold_time", hold_time),
        ("timeout", timeout),
    ):
        if not math.isfinite(value):
            raise GoalRejected(f"{name} {value} is not finite")
    tilt = tilt_angle if tilt_angle > 0 else cfg.tilt_angle
    hold = hold_time if hold_time >= 0 else cfg.hold_time
    limit = timeout if timeout > 0 else cfg.timeout
    if tilt > cfg.max_tilt_angle:
        raise GoalRejected(
            f"tilt_angle {tilt:g} rad is above max_tilt_angle {cfg.max_tilt_angle:g}"
        )
    if tilt < cfg.min_angle:
        raise GoalRejected(f"tilt_angle {tilt:g} rad is below min_angle {cfg.min_angle:g}")
    if hold > cfg.max_hold_time:
        raise GoalRejected(f"hold_time {hold:g} s is above max_hold_time {cfg.max_hold_time:g}")
    if limit > cfg.max_timeout:
        raise GoalRejected(f"timeout {limit:g} s is above max_timeout {cfg.max_timeout:g}")
    return ResetGoal(tilt, hold, limit)


class ResetSequence:
    """Runs tilt -> hold (shakes, then wait) -> return on a motor, polling at `config.poll_rate`.

    Ends with DONE; FAULT when the controller reports a fault or refuses a command (the motor
    is left alone); TIMEOUT when the whole reset exceeds its timeout or the motor gives no
    usable answer for `config.comm_timeout` (the bin is then told to return to level, once,
    best effort). `should_cancel` is polled too; a cancel also returns the bin to level.
    `arm_check` (the arm interlock, "" = the arm is safe, else why not) is polled with every
    motor poll: when it objects, the reset stops with FAULT and the bin is brought back to level
    (commanded, and watched until level, a motor fault, silence or a return-time limit).
    """

    def __init__(
        self,
        motor: BinMotor,
        config: ResetBinConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.motor = motor
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._last_angle = math.nan
        self._last_contact = 0.0
        self._deadline = 0.0
        self._timeout = 0.0

    def run(
        self,
        tilt_angle: float,
        hold_time: float,
        timeout: float,
        feedback: Callable[[str, MotorReading], None] = lambda phase, reading: None,
        should_cancel: Callable[[], bool] = lambda: False,
        arm_check: Callable[[], str] = lambda: "",
    ) -> ResetResult:
        """One reset. Arguments are physical values (the node resolves goal defaults)."""
        cfg = self.config
        for name, value in (("tilt_angle", tilt_angle), ("hold_time", hold_time)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if not cfg.min_angle <= tilt_angle <= cfg.max_angle:
            raise ValueError(f"tilt_angle {tilt_angle} outside [{cfg.min_angle}, {cfg.max_angle}]")
        if hold_time < 0 or not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"need hold_time >= 0 and timeout > 0, got {hold_time}, {timeout}")
        start = self._clock()
        self._deadline, self._timeout = start + timeout, timeout
        self._last_contact = start
        self._feedback, self._should_cancel = feedback, should_cancel
        self._arm_check = arm_check
        try:
            reading = self._read_with_retry("start")
            if reading.fault:
                raise _Abort(
                    ResetOutcome.FAULT, f"motor fault before the reset: {reading.message}"
                )
            self._move("tilt", tilt_angle)
            for _ in range(cfg.shakes):
                self._move("hold", max(cfg.min_angle, tilt_angle - cfg.shake_amplitude))
                self._move("hold", tilt_angle)
            # Hold for hold_time and until one reading confirms it: with only failed reads
            # (a stalled line) the hold would otherwise pass unobserved. A silent motor still
            # ends in the comm timeout of `_check_limits`.
            hold_end = self._clock() + hold_time
            confirmed = False
            while self._clock() < hold_end or not confirmed:
                confirmed = self._poll("hold") is not None or confirmed
            self._move("return", cfg.level_angle)
        except _Abort as abort:
            message = abort.message
            if abort.return_bin:
                message += self._return_to_level()
            elif abort.outcome in (ResetOutcome.TIMEOUT, ResetOutcome.CANCELED):
                self._best_effort_level()
            return ResetResult(abort.outcome, self._last_angle, message)
        return ResetResult(
            ResetOutcome.DONE,
            self._last_angle,
            f"reset done in {self._clock() - start:.2f} s (tilted to {tilt_angle:.3f} rad)",
        )

    # -- steps ---------------------------------------------------------------------------------
    def _move(self, phase: str, angle: float) -> None:
        """Command `angle` and poll until the hinge is there."""
        self._command_with_retry(phase, angle)
        while True:
            reading = self._poll(phase)
            if reading is not None and abs(reading.angle - angle) <= self.config.angle_tolerance:
                return

    def _poll(self, phase: str) -> MotorReading | None:
        """One polling period: checks, one read, feedback. None if the read failed."""
        self._check_limits(phase)
        self._sleep(1.0 / self.config.poll_rate)
        try:
            reading = self.motor.read()
        except MotorTimeout:
            return None
        self._accept(reading)
        if reading.fault:
            raise _Abort(ResetOutcome.FAULT, f"motor fault during {phase}: {reading.message}")
        self._feedback(phase, reading)
        return reading

    def _read_with_retry(self, phase: str) -> MotorReading:
        while True:
            self._check_limits(phase)
            try:
                reading = self.motor.read()
            except MotorTimeout:
                self._sleep(1.0 / self.config.poll_rate)
                continue
            self._accept(reading)
            return reading

    def _command_with_retry(self, phase: str, angle: float) -> None:
        while True:
            self._check_limits(phase)
            try:
                self.motor.command(angle, self.config.velocity)
                self._last_contact = self._clock()
                return
            except MotorFault as exc:
                raise _Abort(ResetOutcome.FAULT, f"motor refused {phase}: {exc}") from exc
            except MotorTimeout:
                self._sleep(1.0 / self.config.poll_rate)

    def _accept(self, reading: MotorReading) -> None:
        self._last_contact = self._clock()
        self._last_angle = reading.angle

    def _check_limits(self, phase: str) -> None:
        now = self._clock()
        if self._should_cancel():
            raise _Abort(ResetOutcome.CANCELED, f"canceled during {phase}")
        unsafe = self._arm_check()
        if unsafe:
            raise _Abort(
                ResetOutcome.FAULT,
                f"interlock stopped the reset during {phase}: {unsafe}",
                return_bin=True,
            )
        silent_for = now - self._last_contact
        if silent_for > self.config.comm_timeout:
            raise _Abort(
                ResetOutcome.TIMEOUT,
                f"motor controller stopped answering during {phase} "
                f"(no usable reply for {silent_for:.2f} s)",
            )
        if now > self._deadline:
            raise _Abort(
                ResetOutcome.TIMEOUT,
                f"reset not finished in {self._timeout:.2f} s (during {phase}, "
                f"hinge at {self._last_angle:.3f} rad)",
            )

    def _best_effort_level(self) -> None:
        with contextlib.suppress(MotorTimeout, MotorFault):
            self.motor.command(self.config.level_angle, self.config.velocity)

    def _return_to_level(self) -> str:
        """After an interlock stop: command level and watch the hinge get there. Returns what
        happened, as a suffix of the result message. Ends at a motor fault, a silent motor
        (`comm_timeout`), a cancel, or after a full-range return at `velocity` plus
        `comm_timeout` (the reset's own deadline may have passed already)."""
        cfg = self.config
        try:
            self.motor.command(cfg.level_angle, cfg.velocity)
        except (MotorTimeout, MotorFault) as exc:
            return f"; the bin could not be told to return to level: {exc}"
        now = self._clock()
        self._last_contact = now
        end = now + (cfg.max_angle - cfg.min_angle) / cfg.velocity + cfg.comm_timeout
        while True:
            now = self._clock()
            if self._should_cancel():
                return "; canceled while the bin returns to level"
            if now - self._last_contact > cfg.comm_timeout:
                return "; the bin was told to return to level (no motor answer since)"
            if now > end:
                return f"; the bin did not get back to level (at {self._last_angle:.3f} rad)"
            self._sleep(1.0 / cfg.poll_rate)
            try:
                reading = self.motor.read()
            except MotorTimeout:
                continue
            self._accept(reading)
            if reading.fault:
                return f"; motor fault while returning to level: {reading.message}"
            self._feedback("return", reading)
            if abs(reading.angle - cfg.level_angle) <= cfg.angle_tolerance:
                return "; the bin returned to level"
