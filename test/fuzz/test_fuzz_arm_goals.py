"""Arm goals (MoveEndEffector and joint moves): any request gives a ValueError, or a plan whose
every waypoint is within the joint limits, whose target lies in a bin or above the transit
height (never on a wall) and whose timing passes the limit check the controller publishes
with."""

import math

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.motion import (
    MODE_ABSOLUTE,
    MODE_DELTA,
    kinematics_for,
    plan_joint_move,
    plan_move,
    safety_of,
)

CFG = IiwaControllerConfig().validate()
VOLUMES, LIMITS = safety_of(CFG)
START_POINTS = [(0.56, -0.15, 0.2), (0.56, 0.15, 0.06), (0.5, -0.2, 0.05), (0.6, 0.0, 0.3)]

anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2.0, 2.0),
    st.sampled_from([0.0, 1e6, -1e6, 1e308, -1e308]),
)


@pytest.fixture(scope="module")
def kin():
    return kinematics_for(CFG)


@pytest.fixture(scope="module")
def starts(kin):
    rest = np.array(CFG.rest_q)
    return [kin.ik(np.array(p), 0.0, rest, rest_q=rest).q for p in START_POINTS]


def _check(kin, plan) -> None:
    assert np.all(np.isfinite(plan.positions)) and np.all(np.isfinite(plan.times))
    LIMITS.check(plan.times, plan.positions, start=plan.positions[0])
    reached = kin.fk(plan.final_q).position
    assert VOLUMES.volume_of(reached, tolerance=0.01) is not None, reached


@given(
    start=st.integers(0, len(START_POINTS) - 1),
    mode=st.sampled_from([MODE_DELTA, MODE_ABSOLUTE, 2, 255]),
    xyz=st.tuples(anything, anything, anything),
    yaw=anything,
    duration=anything,
)
@example(start=0, mode=MODE_ABSOLUTE, xyz=(0.56, 0.0, 0.05), yaw=0.0, duration=0.0)  # a wall
@example(start=1, mode=MODE_ABSOLUTE, xyz=(0.56, -0.15, 0.05), yaw=3.0, duration=0.0)
@example(start=0, mode=MODE_DELTA, xyz=(0.0, -1.0, 0.0), yaw=0.0, duration=8.988e307)  # overflow
def test_cartesian_goal(kin, starts, start, mode, xyz, yaw, duration):
    try:
        plan = plan_move(kin, CFG, starts[start], mode, list(xyz), yaw, duration)
    except ValueError as exc:
        assert str(exc)
        event("refused")
        return
    event("clamped" if plan.clamped else "planned")
    _check(kin, plan)


@given(start=st.integers(0, len(START_POINTS) - 1), q=st.lists(anything, min_size=0, max_size=9))
def test_joint_goal(kin, starts, start, q):
    try:
        plan = plan_joint_move(kin, CFG, starts[start], q)
    except ValueError as exc:
        assert str(exc)
        event("refused")
        return
    event("planned")
    assert len(q) == 7 and all(math.isfinite(v) for v in q)
    assert np.all(np.isfinite(plan.positions))
    LIMITS.check(plan.times, plan.positions, start=plan.positions[0])
