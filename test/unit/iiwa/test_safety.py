"""The arm's safety layer: free-space volumes (clamp, routing over the walls) and the joint
limit check every trajectory passes before it is published."""

import dataclasses
import math

import numpy as np
import pytest

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.motion import (
    MODE_ABSOLUTE,
    MODE_DELTA,
    MoveMonitor,
    Outcome,
    kinematics_for,
    plan_joint_move,
    plan_move,
    safety_of,
)
from mtopt_iiwa.safety import (
    HOLD_GAP_FACTOR,
    IIWA14_POSITION_LIMITS,
    CellVolumes,
    JointLimitError,
    JointLimits,
    Volume,
    hold_duration,
)

CFG = IiwaControllerConfig().validate()
REST = np.array(CFG.rest_q)
VOLUMES, LIMITS = safety_of(CFG)
#: The MuJoCo cell's wall tops (rims z 0.11; the chute over the middle walls reaches 0.118)
#: plus the fingertips' 0.0225 m below the grasp point (mtopt_sim.scene / mtopt_sim.robot).
WALL_CLEARANCE_Z = 0.118 + 0.0225


@pytest.fixture(scope="module")
def kin():
    return kinematics_for(CFG)


def _q_at(kin, position, yaw=0.0):
    solution = kin.ik(position, yaw, REST, rest_q=REST)
    assert solution.converged
    return solution.q


def _followed(kin, plan, start_time=0.0):
    """Feed a MoveMonitor the plan's own positions (a perfect arm) until it decides."""
    monitor = MoveMonitor(kin, CFG, plan, start_time=start_time, timeout=plan.duration + 3)
    for t in np.arange(0.0, plan.duration + 1.0, 0.01):
        q = np.array([np.interp(t, plan.times, plan.positions[:, j]) for j in range(7)])
        status = monitor.update(start_time + t, q)
        if status.done:
            return status
    raise AssertionError("monitor never finished")


# -- free space ----------------------------------------------------------------------------
def test_target_on_the_wall_between_the_bins_is_clamped_into_a_bin_and_reported(kin):
    q0 = _q_at(kin, [0.56, -0.15, 0.05])
    plan = plan_move(kin, CFG, q0, MODE_ABSOLUTE, [0.56, 0.0, 0.05], 0.0)  # on the wall
    right = VOLUMES.bins[0]
    assert plan.clamped and plan.volume == "right_bin" and "right_bin" in plan.message
    assert right.contains(plan.target_position, tolerance=1e-3)
    edge = [0.56, CFG.right_bin_high[1], 0.05]
    np.testing.assert_allclose(plan.target_position, edge, atol=1e-3)
    assert not plan.routed  # it stays in the bin the arm is in
    status = _followed(kin, plan)
    assert status.outcome is Outcome.CLAMPED and "workspace" in status.message


def test_wall_target_from_above_and_delta_steps_land_in_a_bin(kin):
    # The arm above the wall (in the transit slab): a target low on the wall goes into the
    # nearer bin, not onto the wall.
    q0 = _q_at(kin, [0.56, 0.01, 0.25])
    plan = plan_move(kin, CFG, q0, MODE_DELTA, [0.0, 0.0, -0.2], 0.0)
    assert plan.clamped and plan.volume == "left_bin"
    assert VOLUMES.bins[1].contains(plan.target_position, tolerance=1e-3)
    # A 5 cm step from the right bin's edge toward the wall at low height stops at the edge.
    q1 = _q_at(kin, [0.56, -0.06, 0.06])
    plan = plan_move(kin, CFG, q1, MODE_DELTA, [0.0, 0.05, 0.0], 0.0)
    assert plan.clamped and plan.target_position[1] == pytest.approx(-0.04, abs=1e-3)


def test_low_move_from_the_right_bin_to_the_left_bin_goes_over_the_transit_height(kin):
    q0 = _q_at(kin, [0.56, -0.15, 0.05])
    plan = plan_move(kin, CFG, q0, MODE_ABSOLUTE, [0.56, 0.15, 0.05], 0.3)
    assert plan.routed and not plan.clamped, plan.message
    assert len(plan.corners) == 4  # up, across, down
    path = np.array([kin.fk(q).position for q in plan.positions])
    gap = (path[:, 1] > CFG.right_bin_high[1]) & (path[:, 1] < CFG.left_bin_low[1])
    assert gap.sum() >= 3  # waypoints every centimetre while crossing
    # Every waypoint while crossing the wall is at the transit height, far above the walls.
    assert np.all(path[gap, 2] >= CFG.transit_height - 0.005)
    assert np.all(path[gap, 2] >= WALL_CLEARANCE_Z + 0.05)
    # Up and down are vertical: no waypoint leaves the bins' columns below the transit height.
    low = path[:, 2] < CFG.transit_height - 0.005
    assert all(any(b.over(p, 0.002) for b in VOLUMES.bins) for p in path[low])
    np.testing.assert_allclose(plan.target_position, [0.56, 0.15, 0.05], atol=1e-3)
    LIMITS.check(plan.times[1:], plan.positions[1:], plan.positions[0], plan.velocities[1:])
    assert _followed(kin, plan).outcome is Outcome.REACHED


def test_moves_that_need_no_route_stay_straight(kin):
    q0 = _q_at(kin, [0.56, -0.15, 0.25])
    # Across the bins above the transit height, and down within one bin: straight lines.
    for target in ([0.56, 0.15, 0.30], [0.60, -0.10, 0.05]):
        plan = plan_move(kin, CFG, q0, MODE_ABSOLUTE, target, 0.0)
        assert not plan.routed and not plan.clamped, (target, plan.message)
    # Above the middle wall, high up: inside the transit slab, not clamped.
    plan = plan_move(kin, CFG, q0, MODE_ABSOLUTE, [0.56, 0.0, 0.3], 0.0)
    assert not plan.clamped and plan.volume == "transit"


def test_volumes_validate_and_name_what_is_wrong():
    with pytest.raises(ValueError, match="right_bin"):
        Volume("right_bin", (0.5, 0.0, 0.0), (0.4, 0.1, 0.1))
    right = Volume("right_bin", (0.4, -0.3, 0.03), (0.7, -0.04, 0.4))
    with pytest.raises(ValueError, match="transit_height"):
        CellVolumes((right,), 0.5)
    volumes = CellVolumes((right,), 0.2)
    assert volumes.route([0.5, -0.2, 0.05], [0.6, -0.1, 0.05])[-1].tolist() == [0.6, -0.1, 0.05]


# -- joint limits --------------------------------------------------------------------------
def test_limits_refuse_a_million_radians_naming_joint_value_and_limit():
    start = np.array(CFG.home_q)
    for sign in (1.0, -1.0):
        target = start.copy()
        target[2] = sign * 1e6
        with pytest.raises(JointLimitError, match=r"joint A3 position .*1e\+06 rad.*limit") as e:
            LIMITS.check([2.0], [target], start)
        assert "2.9571" in str(e.value)  # 170 deg less the 0.01 rad margin
    # Just inside the margined limit passes; beyond it (still inside the robot's) does not.
    near = np.zeros(7)
    near[0] = IIWA14_POSITION_LIMITS[0] - 0.011
    LIMITS.check([5.0], [near], np.zeros(7))
    near[0] = IIWA14_POSITION_LIMITS[0] - 0.009
    with pytest.raises(JointLimitError, match="A1"):
        LIMITS.check([5.0], [near], np.zeros(7))


def test_limits_refuse_a_jump_and_a_velocity_beyond_the_limit():
    start = np.array(CFG.home_q)
    jump = start + np.array([0, 0, 0, 0, 0, 0, 0.5])
    with pytest.raises(JointLimitError, match="joint A7 jumps at t=0.000"):
        LIMITS.check([0.0, 1.0], [jump, jump], start)
    # 0.5 rad in 0.075 s: 6.7 rad/s on A7 (limit 135 deg/s = 2.36 rad/s, checked at 2.12).
    with pytest.raises(JointLimitError, match=r"A7 velocity 6\.667 rad/s.*limit 2\.121"):
        LIMITS.check([0.075], [jump], start)
    # A velocity given in the message beyond the limit is refused as well.
    slow = [0.5 * i / 10 for i in range(1, 11)]
    times = np.linspace(0.5, 5.0, 10)
    positions = start + np.outer(slow, [0, 0, 0, 0, 0, 0, 1])
    velocities = np.zeros((10, 7))
    LIMITS.check(times, positions, start, velocities)
    velocities[3, 3] = 2.0
    with pytest.raises(JointLimitError, match="A4 velocity 2.000 rad/s"):
        LIMITS.check(times, positions, start, velocities)
    # A servo-lag offset at the start is excused only up to start_tolerance.
    LIMITS.check([0.0, 1.0], [start + 0.05, start + 0.05], start, start_tolerance=0.1)


def test_limits_refuse_an_acceleration_beyond_the_limit():
    start = np.zeros(7)
    # 0.1 rad in 0.2 s from rest: 0.5 rad/s, reached within 0.1 s -> 5 rad/s^2: fine; the
    # same in 0.1 s: 1 rad/s within 0.05 s -> 20 rad/s^2, beyond 10 less 10 %.
    step = np.array([0.1, 0, 0, 0, 0, 0, 0])
    LIMITS.check([0.2], [step], start)
    with pytest.raises(JointLimitError, match=r"A1 acceleration 20\.00 rad/s\^2.*9\.00"):
        LIMITS.check([0.1], [step], start)
    unchecked = dataclasses.replace(LIMITS, acceleration=None)
    unchecked.check([0.1], [step], start)


def test_limits_accept_the_controllers_plans(kin):
    q0 = _q_at(kin, [0.56, -0.15, 0.25])
    plans = [
        plan_move(kin, CFG, q0, MODE_DELTA, [0.03, 0.04, -0.05], 0.2),
        plan_move(kin, CFG, q0, MODE_DELTA, [0.0, 0.0, -0.2], 0.25, duration=0.15),
        plan_move(kin, CFG, q0, MODE_ABSOLUTE, [0.56, 0.15, 0.05], -1.0),
        plan_joint_move(kin, CFG, q0, CFG.home_q),
        plan_joint_move(kin, CFG, q0, CFG.present_q),
    ]
    # The simulated cell's controller runs at max_joint_velocity 2.0: still within limits.
    fast = dataclasses.replace(CFG, max_joint_velocity=2.0)
    plans.append(plan_move(kin, fast, q0, MODE_DELTA, [0.0, 0.0, 0.0], 1.5))
    for plan in plans:
        assert (
            LIMITS.violation(
                plan.times[1:], plan.positions[1:], plan.positions[0], plan.velocities[1:]
            )
            is None
        )
        assert np.all(np.abs(plan.velocities) <= LIMITS.max_velocity + 1e-9)


def test_limits_check_their_own_inputs():
    with pytest.raises(ValueError, match="velocity"):
        JointLimits(velocity=(1.0,) * 6)
    with pytest.raises(ValueError, match="velocity_margin"):
        JointLimits(velocity_margin=1.0)
    assert "strictly increasing" in LIMITS.violation([1.0, 1.0], np.zeros((2, 7)))
    assert "finite" in LIMITS.violation([1.0], [[math.nan] * 7])
    assert LIMITS.violation([], np.zeros((0, 7))) == "empty trajectory"


def test_a_hold_behind_the_setpoint_is_timed_so_the_way_back_stays_in_the_limits():
    """A blocked arm lags its setpoint: a stop at the measured position 50 ms later asked A6
    for 2.7 rad/s and the simulated arm refused it (the stop did not happen)."""
    measured = np.array(CFG.home_q)
    setpoint = measured + np.array([0, 0, 0, 0, 0, 0.134, 0])
    assert LIMITS.violation([0.05], [measured], setpoint) is not None  # the old fixed timing
    duration, refusal = hold_duration(LIMITS, measured, setpoint)
    assert refusal is None and 0.05 < duration < 1.0
    LIMITS.check([duration], [measured], setpoint)
    # Timed for half as much gap again (the setpoint is an estimate), and no longer.
    padded = measured + HOLD_GAP_FACTOR * (setpoint - measured)
    LIMITS.check([duration], [measured], padded)
    assert LIMITS.violation([duration / 1.5], [measured], padded) is not None
    # At rest on its setpoint the hold is immediate; a hold beyond reach is refused.
    assert hold_duration(LIMITS, measured) == (0.05, None)
    far = measured + np.array([0, 0, 0, 0, 0, 100.0, 0])
    assert hold_duration(LIMITS, far, measured)[1] is not None
