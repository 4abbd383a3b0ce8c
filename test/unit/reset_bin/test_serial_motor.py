"""SerialBinMotor (pyserial) against the fake controller on a real pseudo-terminal."""

import time

import pytest

from mtopt_reset_bin.fake_controller import FakeMotorController
from mtopt_reset_bin.motor import MotorFault, MotorTimeout
from mtopt_reset_bin.serial_motor import SerialBinMotor


@pytest.fixture
def controller():
    with FakeMotorController(max_velocity=3.0) as fake:
        yield fake


def _motor(controller, **kwargs):
    return SerialBinMotor(controller.port, request_timeout=0.2, **kwargs)


def test_move_and_read(controller):
    motor = _motor(controller)
    try:
        assert motor.ping().startswith("PONG fake-bin-motor 1")
        assert motor.read().angle == pytest.approx(0.0, abs=1e-9)
        motor.command(0.6, 1.0)
        time.sleep(0.1)
        moving = motor.read()
        assert 0.05 < moving.angle < 0.6 and moving.velocity == pytest.approx(1.0, rel=0.05)
        time.sleep(0.6)
        stopped = motor.read()
        assert stopped.angle == pytest.approx(0.6, abs=1e-6) and not stopped.fault
        assert "MOVE 0.600000 1.000000" in controller.requests
    finally:
        motor.close()


def test_checksummed_lines(controller):
    motor = _motor(controller, use_checksum=True)
    try:
        motor.command(0.1, 3.0)
        time.sleep(0.1)
        assert motor.read().angle == pytest.approx(0.1, abs=1e-6)
    finally:
        motor.close()


def test_refused_move_and_latched_fault(controller):
    motor = _motor(controller)
    try:
        with pytest.raises(MotorFault, match="outside"):
            motor.command(3.5, 1.0)
        controller.set_fault("hinge motor over temperature")
        reading = motor.read()
        assert reading.fault and reading.message == "hinge motor over temperature"
        with pytest.raises(MotorFault, match="fault: hinge motor over temperature"):
            motor.command(1.0, 1.0)
        motor.clear_fault()
        assert not motor.read().fault
        motor.command(0.2, 3.0)
    finally:
        motor.close()


def test_silent_controller_times_out_and_recovers(controller):
    motor = _motor(controller)
    try:
        motor.read()
        controller.set_silent(True)
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(MotorTimeout, match="no reply to POS"):
                motor.read()
            assert time.monotonic() - t0 < 0.6  # request_timeout 0.2 s, not a hang
        controller.set_silent(False)
        motor.command(0.3, 3.0)
        time.sleep(0.2)
        assert motor.read().angle == pytest.approx(0.3, abs=1e-6)
    finally:
        motor.close()


def test_missing_port_is_a_timeout_not_a_crash(tmp_path):
    motor = SerialBinMotor(str(tmp_path / "no-such-tty"), request_timeout=0.05)
    with pytest.raises(MotorTimeout, match="cannot open"):
        motor.read()
    with pytest.raises(ValueError):
        motor.command(float("nan"), 1.0)
    with pytest.raises(ValueError):
        SerialBinMotor("", request_timeout=0.1)
