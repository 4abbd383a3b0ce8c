"""IiwaKinematics: FK against known poses and an independent FK (MuJoCo), IK round trips,
joint-limit and workspace clamping."""

import math
import os

import numpy as np
import pytest

from mtopt_iiwa.kinematics import (
    TIP_LINK,
    IiwaKinematics,
    WorkspaceBox,
    default_urdf_path,
    quaternion_to_rotation,
    rotation_to_quaternion,
    wrap_angle,
    yaw_of,
    yaw_rotation,
)

TOOL = (0.0, 0.0, 0.1725)
REST = np.array([0.0, 0.20, 0.0, -1.75, 0.0, 1.19, 0.0])
# Link offsets along the arm in the URDF (base to link_7 origin), all along z at q = 0.
URDF_HEIGHT = 0.1575 + 0.2025 + 0.2045 + 0.2155 + 0.1845 + 0.2155 + 0.081


@pytest.fixture(scope="module")
def kin():
    return IiwaKinematics(
        tool_offset=TOOL, workspace=WorkspaceBox((0.42, -0.30, 0.03), (0.72, 0.30, 0.35))
    )


def test_fk_zero_configuration_is_the_upright_candle(kin):
    pose = kin.fk(np.zeros(7))
    np.testing.assert_allclose(pose.position, [0.0, 0.0, URDF_HEIGHT + TOOL[2]], atol=1e-9)
    np.testing.assert_allclose(pose.rotation, np.eye(3), atol=1e-9)
    assert kin.joint_names == tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))


def test_fk_shoulder_at_90_degrees_lays_the_arm_flat(kin):
    # Joint 2 (shoulder, 0.36 m up) at +-90 degrees: the rest of the arm lies horizontal.
    reach = URDF_HEIGHT - 0.36 + TOOL[2]
    for sign in (1.0, -1.0):
        pose = kin.fk(np.array([0, sign * math.pi / 2, 0, 0, 0, 0, 0]) * 0.99999999)
        assert abs(pose.position[2] - 0.36) < 1e-6
        assert abs(np.linalg.norm(pose.position[:2]) - reach) < 1e-6


def test_fk_matches_mujoco_loading_the_same_urdf(kin):
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    model = mujoco.MjSpec.from_file(default_urdf_path()).compile()
    data = mujoco.MjData(model)
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, TIP_LINK)
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(kin.lower, kin.upper)
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        rot = data.xmat[body].reshape(3, 3)
        expected = data.xpos[body] + rot @ np.array(TOOL)
        pose = kin.fk(q)
        np.testing.assert_allclose(pose.position, expected, atol=1e-9)
        np.testing.assert_allclose(pose.rotation, rot, atol=1e-9)


def test_rest_posture_points_down_at_yaw_zero(kin):
    pose = kin.fk(REST)
    assert pose.tilt < 0.01
    assert abs(pose.yaw) < 1e-9
    assert 0.3 < pose.position[2] < 0.45


def test_ik_round_trips_to_sub_millimetre(kin):
    rng = np.random.default_rng(2)
    start = kin.fk(REST)
    for _ in range(30):
        target = rng.uniform(kin.workspace.low, kin.workspace.high)
        yaw = rng.uniform(-1.5, 1.5)
        sol = kin.ik(target, yaw, REST, rest_q=REST)
        assert sol.converged, (target, yaw, sol)
        pose = kin.fk(sol.q)
        assert np.linalg.norm(pose.position - target) < 1e-4
        assert abs(wrap_angle(pose.yaw - yaw)) < 1e-3
        assert pose.tilt < 1e-3
        assert np.all(sol.q >= kin.lower) and np.all(sol.q <= kin.upper)
    # And back: a configuration's own pose is solved from a perturbed seed.
    q_true = kin.ik(start.position + [0.05, 0.1, -0.2], 0.7, REST).q
    true_pose = kin.fk(q_true)
    sol = kin.ik(true_pose.position, true_pose.yaw, q_true + 0.05)
    assert np.linalg.norm(kin.fk(sol.q).position - true_pose.position) < 1e-4


def test_ik_respects_joint_limits_and_reports_them(kin):
    # A target next to the base, low, pointing down needs the elbow (joint 4) folded past its
    # limit.
    sol = kin.ik([0.05, 0.0, 0.03], 0.0, REST, max_iterations=200)
    assert not sol.converged
    assert np.all(sol.q >= kin.lower) and np.all(sol.q <= kin.upper)
    assert sol.joints_at_limit, sol
    assert sol.position_error > 0.005


def test_ik_out_of_reach_returns_closest_configuration(kin):
    sol = kin.ik([1.5, 0.0, 0.3], 0.0, REST, max_iterations=200)
    assert not sol.converged
    reach_error = sol.position_error
    assert 0.4 < reach_error < 0.8  # it stretched toward the target


def test_workspace_clamp(kin):
    inside = np.array([0.5, 0.1, 0.2])
    p, clamped = kin.clamp(inside)
    assert not clamped and np.array_equal(p, inside)
    p, clamped = kin.clamp([1.0, -0.5, 0.0])
    assert clamped
    np.testing.assert_allclose(p, [0.72, -0.30, 0.03])
    with pytest.raises(ValueError, match="position"):
        kin.clamp([0.5, np.nan, 0.2])
    unbounded = IiwaKinematics(tool_offset=TOOL, workspace=None)
    p, clamped = unbounded.clamp([5.0, 5.0, 5.0])
    assert not clamped


def test_joint_clamp_uses_margined_urdf_limits(kin):
    q = kin.clamp_joints(np.full(7, 10.0))
    np.testing.assert_allclose(q, np.array(kin.model.upperPositionLimit) - 0.01)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="low <= high"):
        WorkspaceBox((1.0, 0.0, 0.0), (0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="tool_offset"):
        IiwaKinematics(tool_offset=(0.0, 0.1))
    kin = IiwaKinematics()
    with pytest.raises(ValueError, match="7 finite"):
        kin.fk(np.zeros(6))
    with pytest.raises(ValueError, match="yaw"):
        kin.ik([0.5, 0.0, 0.2], float("nan"), REST)


def test_yaw_and_quaternion_helpers():
    for yaw in (-3.0, -1.0, 0.0, 0.5, 3.1):
        assert abs(wrap_angle(yaw_of(yaw_rotation(yaw)) - yaw)) < 1e-12
        rot = yaw_rotation(yaw)
        np.testing.assert_allclose(
            quaternion_to_rotation(*rotation_to_quaternion(rot)), rot, atol=1e-12
        )
        assert abs(rot[2, 2] + 1.0) < 1e-12  # tool z along base -z
    assert abs(wrap_angle(math.pi + 0.1) - (-math.pi + 0.1)) < 1e-12
