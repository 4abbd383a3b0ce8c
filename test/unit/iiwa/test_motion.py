"""plan_move (straight-line IK trajectories), MoveMonitor and GripperMonitor outcomes, config."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtopt_iiwa.config import ConfigError, IiwaControllerConfig
from mtopt_iiwa.kinematics import wrap_angle
from mtopt_iiwa.motion import (
    MODE_ABSOLUTE,
    MODE_DELTA,
    GripperMonitor,
    GripperOutcome,
    MoveMonitor,
    Outcome,
    kinematics_for,
    plan_joint_move,
    plan_move,
    plan_rise,
    plan_setpoint,
)
from mtopt_iiwa.safety import JointLimits

CFG = IiwaControllerConfig().validate()
REST = np.array(CFG.rest_q)


@pytest.fixture(scope="module")
def kin():
    return kinematics_for(CFG)


@pytest.fixture(scope="module")
def q_start(kin):
    # A pose in the middle of the workspace, over the right bin.
    return kin.ik([0.56, -0.15, 0.25], 0.0, REST, rest_q=REST).q


def test_delta_move_follows_a_straight_line(kin, q_start):
    start = kin.fk(q_start)
    delta = np.array([0.03, -0.04, -0.05])
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, delta, 0.2)
    assert not plan.clamped and plan.message == ""
    np.testing.assert_allclose(plan.target_position, start.position + delta, atol=1e-4)
    assert abs(wrap_angle(plan.target_yaw - start.yaw - 0.2)) < 1e-3
    assert np.all(np.diff(plan.times) > 0) and plan.times[0] == 0.0
    assert plan.duration >= CFG.min_duration
    direction = delta / np.linalg.norm(delta)
    for q in plan.positions:
        p = kin.fk(q).position - start.position
        off_line = np.linalg.norm(p - np.dot(p, direction) * direction)
        assert off_line < 0.001
        assert kin.fk(q).tilt < 0.01
    speeds = np.abs(np.diff(plan.positions, axis=0)) / np.diff(plan.times)[:, None]
    assert speeds.max() <= CFG.max_joint_velocity + 1e-9
    assert np.all(plan.velocities[-1] == 0.0)


def test_requested_duration_is_used_unless_joints_would_be_too_fast(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.0, 0.02], 0.0, duration=2.0)
    assert plan.duration == pytest.approx(2.0)
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.2, 0.0], 1.0, duration=0.01)
    speeds = np.abs(np.diff(plan.positions, axis=0)) / np.diff(plan.times)[:, None]
    assert plan.duration > 0.1 and speeds.max() <= CFG.max_joint_velocity + 1e-9
    # Asked for faster than the joints' acceleration limits allow: slowed down until it
    # passes the check the controller makes before publishing.
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.03, -0.03], 0.25, duration=0.05)
    assert plan.duration > 0.15
    limits = JointLimits.from_config(CFG)
    limits.check(plan.times[1:], plan.positions[1:], plan.positions[0], plan.velocities[1:])


def test_absolute_move_outside_workspace_is_clamped(kin, q_start):
    # Beyond the bins' far walls and below their floors, with the arm in the right bin: the
    # target goes into the right bin (the corner nearest it), never onto a wall.
    plan = plan_move(kin, CFG, q_start, MODE_ABSOLUTE, [1.2, 0.0, -0.3], 0.0)
    assert plan.clamped and "workspace" in plan.message and "right_bin" in plan.message
    np.testing.assert_allclose(plan.target_position, [0.70, -0.04, 0.035], atol=1e-3)
    np.testing.assert_allclose(plan.requested_position, [1.2, 0.0, -0.3])


def test_absolute_yaw_takes_the_short_way(kin, q_start):
    start_yaw = kin.fk(q_start).yaw
    plan = plan_move(kin, CFG, q_start, MODE_ABSOLUTE, [0.56, -0.15, 0.25], start_yaw + 0.3)
    assert abs(wrap_angle(plan.target_yaw - start_yaw - 0.3)) < 1e-3


def test_yaw_is_clamped_to_its_limits(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.0, 0.0], 2.0)
    assert plan.clamped and "yaw limits" in plan.message
    assert plan.target_yaw == pytest.approx(CFG.yaw_max, abs=1e-3)
    plan = plan_move(kin, CFG, q_start, MODE_ABSOLUTE, [0.56, -0.15, 0.25], -3.0)
    assert plan.clamped and plan.target_yaw == pytest.approx(CFG.yaw_min, abs=1e-3)


def test_joint_move_to_home(kin, q_start):
    plan = plan_joint_move(kin, CFG, q_start, CFG.home_q)
    assert not plan.clamped
    np.testing.assert_allclose(plan.final_q, CFG.home_q, atol=1e-12)
    np.testing.assert_allclose(plan.target_position, kin.fk(np.array(CFG.home_q)).position)
    speeds = np.abs(np.diff(plan.positions, axis=0)) / np.diff(plan.times)[:, None]
    assert speeds.max() <= CFG.max_joint_velocity + 1e-9
    beyond = plan_joint_move(kin, CFG, q_start, [0, 0, 0, -2.5, 0, 0, 0])
    assert beyond.clamped and "joint limits" in beyond.message


def test_a_joint_move_rises_straight_out_of_a_bin_first(kin, q_start):
    top = CFG.right_bin_high[2]
    low = kin.ik([0.50, -0.20, 0.06], 0.3, q_start, rest_q=REST).q
    rise = plan_rise(kin, CFG, low)
    start = kin.fk(low).position
    np.testing.assert_allclose(rise.target_position, [start[0], start[1], top], atol=1e-3)
    assert rise.target_yaw == pytest.approx(kin.fk(low).yaw, abs=1e-3)
    # Already at the top, or not over a bin: no rise.
    assert plan_rise(kin, CFG, rise.final_q) is None
    assert plan_rise(kin, CFG, np.array(CFG.home_q)) is None


def test_bad_requests_raise(kin, q_start):
    with pytest.raises(ValueError, match="mode"):
        plan_move(kin, CFG, q_start, 7, [0, 0, 0], 0.0)
    with pytest.raises(ValueError, match="finite"):
        plan_move(kin, CFG, q_start, MODE_DELTA, [0, np.inf, 0], 0.0)


def _feed(monitor, samples):
    for t, q in samples:
        status = monitor.update(t, q)
        if status.done:
            return t, status
    raise AssertionError("monitor never finished")


def test_monitor_reached_when_following_the_plan(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.05, 0.0], 0.0)
    monitor = MoveMonitor(kin, CFG, plan, start_time=10.0, timeout=5.0)
    times = np.arange(0.0, plan.duration + 1.0, 0.01)
    samples = [
        (10.0 + t, np.array([np.interp(t, plan.times, plan.positions[:, j]) for j in range(7)]))
        for t in times
    ]
    progresses = []
    for t, q in samples:
        status = monitor.update(t, q)
        progresses.append(status.progress)
        if status.done:
            break
    assert status.outcome is Outcome.REACHED
    assert t - 10.0 >= plan.duration - 1e-9 and t - 10.0 < plan.duration + 0.05
    assert status.position_error < 1e-3
    assert np.all(np.diff(progresses) >= -1e-6) and progresses[0] < 0.05


def test_monitor_reports_clamped(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_ABSOLUTE, [0.56, -0.15, 0.8], 0.0)
    monitor = MoveMonitor(kin, CFG, plan, start_time=0.0, timeout=5.0)
    t, status = _feed(monitor, [(t, plan.final_q) for t in np.arange(0, 5, 0.01)])
    assert status.outcome is Outcome.CLAMPED and "workspace" in status.message


def test_monitor_blocked_when_the_arm_does_not_move(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.0, -0.05], 0.0)
    monitor = MoveMonitor(kin, CFG, plan, start_time=0.0, timeout=5.0)
    t, status = _feed(monitor, [(t, q_start) for t in np.arange(0, 5, 0.01)])
    assert status.outcome is Outcome.BLOCKED
    assert plan.duration <= t <= plan.duration + CFG.stall_window + 0.05
    assert status.position_error == pytest.approx(0.05, abs=1e-3)


def test_monitor_timeout_when_the_arm_creeps(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.0, -0.05], 0.0)
    monitor = MoveMonitor(kin, CFG, plan, start_time=0.0, timeout=1.5)
    # Moves toward the target, but far too slowly to get there (never stalls).
    samples = [
        (t, q_start + (plan.final_q - q_start) * min(1.0, t / 20.0)) for t in np.arange(0, 5, 0.01)
    ]
    t, status = _feed(monitor, samples)
    assert status.outcome is Outcome.TIMEOUT and 1.5 < t < 1.52


def test_gripper_monitor_outcomes():
    # Opens fully: reached.
    mon = GripperMonitor(CFG, target=0.085, start_time=0.0, timeout=3.0)
    for k in range(100):
        status = mon.update(k * 0.02, min(0.085, 0.02 + k * 0.005), 0.0, False)
        if status.done:
            break
    assert status.outcome is GripperOutcome.REACHED
    # Closes on a 3 cm object: stalled.
    mon = GripperMonitor(CFG, target=0.0, start_time=0.0, timeout=3.0)
    for k in range(200):
        status = mon.update(k * 0.02, max(0.03, 0.085 - k * 0.005), 20.0, k > 12)
        if status.done:
            break
    assert status.outcome is GripperOutcome.STALLED and "object" in status.message
    assert status.position == pytest.approx(0.03)
    # Never settles (oscillates): timeout.
    mon = GripperMonitor(CFG, target=0.0, start_time=0.0, timeout=1.0)
    for k in range(200):
        status = mon.update(k * 0.02, 0.04 + 0.01 * (k % 2), 0.0, False)
        if status.done:
            break
    assert status.outcome is GripperOutcome.TIMEOUT


def test_monitors_see_a_stall_in_sparse_samples(kin, q_start):
    """State that arrives in gaps longer than the settle window (a loaded machine) still ends
    the command as stalled/blocked, not as a timeout."""
    mon = GripperMonitor(CFG, target=0.0, start_time=0.0, timeout=3.0)
    for k in range(10):
        status = mon.update(0.4 * k, 0.03, 20.0, True)
        if status.done:
            break
    assert status.outcome is GripperOutcome.STALLED and k == 1
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.0, -0.05], 0.0)
    monitor = MoveMonitor(kin, CFG, plan, start_time=0.0, timeout=5.0)
    gap = 1.5 * CFG.stall_window
    t, status = _feed(monitor, [(t, q_start) for t in np.arange(0, 5, gap)])
    assert status.outcome is Outcome.BLOCKED
    assert plan.duration <= t <= plan.duration + CFG.stall_window + gap


def test_config_validation_names_the_parameter():
    for field, value, match in [
        ("joint_names", ("a",) * 7, "joint_names"),
        ("tool_offset", (0.0, 0.0), "tool_offset"),
        ("right_bin_low", (0.9, 0.0, 0.0), "right_bin_low"),
        ("left_bin_high", (0.7, 0.3), "left_bin_high"),
        ("left_bin_low", (0.42, -0.275, 0.035), "overlap"),
        ("transit_height", 0.5, "transit_height"),
        ("transit_height", float("nan"), "transit_height"),
        ("joint_velocity_limits", (1.0,) * 6 + (-1.0,), "joint_velocity_limits"),
        ("joint_acceleration_limits", (10.0,) * 6, "joint_acceleration_limits"),
        ("joint_position_margin", 0.05, "joint_position_margin"),
        ("joint_velocity_margin", 1.0, "joint_velocity_margin"),
        ("position_tolerance", -1.0, "position_tolerance"),
        ("stall_window", float("nan"), "stall_window"),
        ("reach_tolerance", 1e-6, "reach_tolerance"),
        ("yaw_min", 2.0, "yaw_min"),
        ("home_q", (0.0,) * 6, "home_q"),
    ]:
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(CFG, **{field: value}).validate()


def test_config_file_matches_the_dataclass_defaults():
    path = Path(__file__).resolve().parents[3] / "config" / "iiwa.yaml"
    params = yaml.safe_load(path.read_text())["/**/iiwa_controller"]["ros__parameters"]
    assert set(params) == {f.name for f in dataclasses.fields(IiwaControllerConfig)}
    for name, value in params.items():
        default = getattr(CFG, name)
        assert (list(default) if isinstance(default, tuple) else default) == value, name


def test_plan_setpoint_is_where_the_plan_commands_the_joints(kin, q_start):
    plan = plan_move(kin, CFG, q_start, MODE_DELTA, [0.0, 0.05, 0.0], 0.0, duration=1.0)
    assert np.allclose(plan_setpoint(plan, -1.0), plan.positions[0])
    assert np.allclose(plan_setpoint(plan, 99.0), plan.positions[-1])
    k = len(plan.times) // 2
    assert np.allclose(plan_setpoint(plan, plan.times[k]), plan.positions[k])
