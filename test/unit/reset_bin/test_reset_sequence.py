"""ResetSequence outcomes: on the sim motor (simulated time) and on the fake serial controller."""

import dataclasses
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtopt_reset_bin.config import ConfigError, ResetBinConfig
from mtopt_reset_bin.fake_controller import FakeMotorController
from mtopt_reset_bin.motor import MotorTimeout, SimBinMotor
from mtopt_reset_bin.reset import ResetOutcome, ResetSequence
from mtopt_reset_bin.serial_motor import SerialBinMotor

CFG = ResetBinConfig(tilt_angle=1.0, hold_time=0.2, velocity=3.0, shakes=0).validate()


class SimulatedHinge:
    """A sim cell's hinge in simulated time: `sleep` advances it and publishes its state."""

    def __init__(self, publishing=True):
        self.now = 0.0
        self.angle = 0.0
        self.target = 0.0
        self.speed = 1.0
        self.publishing = publishing
        self.commands = []
        self.motor = SimBinMotor(self._on_command, state_timeout=0.3, clock=lambda: self.now)

    def _on_command(self, angle, velocity):
        self.commands.append((angle, velocity))
        self.target, self.speed = angle, velocity

    def sleep(self, dt):
        self.now += dt
        step = max(-self.speed * dt, min(self.speed * dt, self.target - self.angle))
        self.angle += step
        if self.publishing:
            self.motor.on_state(self.angle, step / dt, False, "")


def test_sim_motor_reset_goes_up_then_down():
    hinge = SimulatedHinge()
    hinge.sleep(0.01)
    feedback = []
    result = ResetSequence(hinge.motor, CFG, clock=lambda: hinge.now, sleep=hinge.sleep).run(
        1.0, 0.5, 10.0, feedback=lambda phase, r: feedback.append((phase, r.angle))
    )
    assert result.outcome is ResetOutcome.DONE, result.message
    assert abs(result.final_angle) <= CFG.angle_tolerance
    assert hinge.commands == [(1.0, 3.0), (0.0, 3.0)]
    phases = [p for p, _ in feedback]
    assert phases[0] == "tilt" and "hold" in phases and phases[-1] == "return"
    angles = [a for _, a in feedback]
    peak = angles.index(max(angles))
    assert max(angles) >= 1.0 - CFG.angle_tolerance
    steps = np.diff(angles)
    assert np.all(steps[:peak] >= -1e-9) and np.all(steps[peak:] <= 1e-9)
    hold_times = [i for i, p in enumerate(phases) if p == "hold"]
    assert len(hold_times) >= int(0.5 * CFG.poll_rate) - 1


class DropsReadsAfterTilt:
    """The hinge's motor, but the `drops` reads after it first reports the tilt time out (a
    serial line that stalls just as the hold starts)."""

    def __init__(self, hinge, tilt, drops):
        self.hinge, self.tilt, self.drops = hinge, tilt, drops
        self.tilted = False

    def command(self, angle, velocity):
        self.hinge.motor.command(angle, velocity)

    def read(self):
        if self.tilted and self.drops > 0:
            self.drops -= 1
            raise MotorTimeout("no reply")
        reading = self.hinge.motor.read()
        self.tilted = self.tilted or reading.angle >= self.tilt - CFG.angle_tolerance
        return reading


def test_hold_reports_at_least_one_reading_when_reads_fail():
    hinge = SimulatedHinge()
    hinge.sleep(0.01)
    # Every poll of the 0.2 s hold (20 Hz) fails; the hold must still confirm the tilt once.
    motor = DropsReadsAfterTilt(hinge, 1.0, drops=int(0.2 * CFG.poll_rate) + 1)
    feedback = []
    result = ResetSequence(motor, CFG, clock=lambda: hinge.now, sleep=hinge.sleep).run(
        1.0, 0.2, 10.0, feedback=lambda phase, r: feedback.append((phase, r.angle))
    )
    assert result.outcome is ResetOutcome.DONE, result.message
    hold = [a for p, a in feedback if p == "hold"]
    assert hold and all(a >= 1.0 - CFG.angle_tolerance for a in hold)


def test_shakes_swing_back_and_up_during_hold():
    hinge = SimulatedHinge()
    hinge.sleep(0.01)
    shaking = dataclasses.replace(CFG, shakes=2, shake_amplitude=0.3)
    feedback = []
    result = ResetSequence(hinge.motor, shaking, clock=lambda: hinge.now, sleep=hinge.sleep).run(
        1.0, 0.2, 10.0, feedback=lambda phase, r: feedback.append((phase, r.angle))
    )
    assert result.outcome is ResetOutcome.DONE, result.message
    np.testing.assert_allclose(
        hinge.commands, [(1.0, 3.0), (0.7, 3.0), (1.0, 3.0), (0.7, 3.0), (1.0, 3.0), (0.0, 3.0)]
    )
    hold = np.array([a for phase, a in feedback if phase == "hold"])
    dips = np.sum(
        (hold[1:] <= 0.7 + CFG.angle_tolerance) & (hold[:-1] > 0.7 + CFG.angle_tolerance)
    )
    assert dips == 2


def test_sim_motor_without_state_times_out():
    hinge = SimulatedHinge(publishing=False)
    with pytest.raises(MotorTimeout):
        hinge.motor.read()
    result = ResetSequence(hinge.motor, CFG, clock=lambda: hinge.now, sleep=hinge.sleep).run(
        1.0, 0.5, 10.0
    )
    assert result.outcome is ResetOutcome.TIMEOUT
    assert "stopped answering" in result.message
    assert hinge.now <= CFG.comm_timeout + 0.1
    assert math.isnan(result.final_angle)


def test_slow_motor_hits_the_reset_timeout():
    hinge = SimulatedHinge()
    hinge.sleep(0.01)
    slow = dataclasses.replace(CFG, velocity=0.1)
    result = ResetSequence(hinge.motor, slow, clock=lambda: hinge.now, sleep=hinge.sleep).run(
        1.0, 0.5, 2.0
    )
    assert result.outcome is ResetOutcome.TIMEOUT
    assert "not finished in 2.00 s (during tilt" in result.message
    assert 2.0 <= hinge.now <= 2.2
    assert hinge.commands[-1][0] == 0.0  # told to go back to level


def test_cancel_returns_to_level():
    hinge = SimulatedHinge()
    hinge.sleep(0.01)
    result = ResetSequence(hinge.motor, CFG, clock=lambda: hinge.now, sleep=hinge.sleep).run(
        1.0, 5.0, 20.0, should_cancel=lambda: hinge.now > 1.0
    )
    assert result.outcome is ResetOutcome.CANCELED and "hold" in result.message
    assert hinge.commands[-1][0] == 0.0


def test_bad_arguments_raise():
    hinge = SimulatedHinge()
    seq = ResetSequence(hinge.motor, CFG, clock=lambda: hinge.now, sleep=hinge.sleep)
    with pytest.raises(ValueError, match="tilt_angle"):
        seq.run(3.5, 0.5, 5.0)
    with pytest.raises(ValueError):
        seq.run(1.0, -1.0, 5.0)
    with pytest.raises(ValueError):
        seq.run(float("nan"), 0.5, 5.0)


@pytest.fixture
def serial_setup():
    with FakeMotorController(max_velocity=3.0) as fake:
        motor = SerialBinMotor(fake.port, request_timeout=0.1)
        yield fake, motor
        motor.close()


def test_serial_reset_done(serial_setup):
    fake, motor = serial_setup
    feedback = []
    result = ResetSequence(motor, CFG).run(
        0.8, 0.2, 5.0, feedback=lambda phase, r: feedback.append((phase, r.angle))
    )
    assert result.outcome is ResetOutcome.DONE, result.message
    assert abs(fake.reading().angle) <= CFG.angle_tolerance
    assert max(a for _, a in feedback) >= 0.8 - CFG.angle_tolerance


def test_serial_fault_is_reported_with_its_message(serial_setup):
    fake, motor = serial_setup
    timer = threading.Timer(0.15, fake.set_fault, args=("encoder lost",))
    timer.start()
    t0 = time.monotonic()
    result = ResetSequence(motor, CFG).run(1.0, 0.2, 5.0)
    timer.join()
    assert result.outcome is ResetOutcome.FAULT
    assert "encoder lost" in result.message
    assert time.monotonic() - t0 < 1.0
    assert 0.0 < result.final_angle < 1.0  # stopped where the fault struck


def test_serial_silence_is_a_timeout_then_recovery(serial_setup):
    fake, motor = serial_setup
    timer = threading.Timer(0.15, fake.set_silent, args=(True,))
    timer.start()
    t0 = time.monotonic()
    result = ResetSequence(motor, CFG).run(1.0, 0.2, 5.0)
    elapsed = time.monotonic() - t0
    timer.join()
    assert result.outcome is ResetOutcome.TIMEOUT and "stopped answering" in result.message
    assert CFG.comm_timeout <= elapsed < CFG.comm_timeout + 1.2  # far inside the 5 s timeout
    fake.set_silent(False)
    result = ResetSequence(motor, CFG).run(0.5, 0.0, 5.0)
    assert result.outcome is ResetOutcome.DONE, result.message


def test_config_validation_names_the_parameter():
    for field, value, match in [
        ("backend", "can", "backend"),
        ("tilt_angle", 3.5, "tilt_angle"),
        ("shakes", -1, "shakes"),
        ("shake_amplitude", -0.1, "shake_amplitude"),
        ("velocity", 0.0, "velocity"),
        ("hold_time", -1.0, "hold_time"),
        ("comm_timeout", 0.1, "comm_timeout"),
        ("min_angle", 3.0, "min_angle"),
        ("max_tilt_angle", 3.1, "max_tilt_angle"),
        ("max_tilt_angle", 0.9, "tilt_angle 1.0 is above max_tilt_angle"),
        ("max_hold_time", float("inf"), "max_hold_time"),
        ("max_hold_time", 0.1, "hold_time 0.2 is above max_hold_time"),
        ("max_timeout", 5.0, "timeout 10.0 is above max_timeout"),
        ("safe_poses", (0.0,) * 8, "safe_poses"),
        ("safe_poses", (), "safe_poses"),
        ("safe_poses", (float("nan"),) * 7, "safe_poses"),
        ("safe_pose_tolerance", 0.0, "safe_pose_tolerance"),
        ("joint_state_timeout_s", -1.0, "joint_state_timeout_s"),
        ("joint_names", ("a",) * 7, "joint_names"),
    ]:
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(CFG, **{field: value}).validate()


def test_config_file_matches_the_dataclass_defaults():
    path = Path(__file__).resolve().parents[3] / "config" / "reset_bin.yaml"
    params = yaml.safe_load(path.read_text())["/**/reset_bin"]["ros__parameters"]
    assert set(params) == {f.name for f in dataclasses.fields(ResetBinConfig)}
    defaults = ResetBinConfig()
    for name, value in params.items():
        default = getattr(defaults, name)
        assert (list(default) if isinstance(default, tuple) else default) == value, name
