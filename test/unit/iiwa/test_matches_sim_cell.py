"""The controller's defaults describe the same robot and cell as the MuJoCo cell (mtopt_sim)."""

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.kinematics import IiwaKinematics, yaw_of
from mtopt_sim import cell, robot
from mtopt_sim import ik as sim_ik
from mtopt_sim import scene as scene_mod

CFG = IiwaControllerConfig().validate()


def test_fk_equals_the_sim_tcp_site():
    assert CFG.tool_offset[2] == pytest.approx(robot.FLANGE_Z + robot.TCP_FROM_FLANGE)
    model = robot.build_robot_spec().compile()
    data = mujoco.MjData(model)
    site = model.site(robot.TCP_SITE).id
    qadr = [model.jnt_qposadr[model.joint(n).id] for n in robot.URDF_JOINT_NAMES]
    kin = IiwaKinematics(tool_offset=CFG.tool_offset)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(kin.lower, kin.upper)
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        pose = kin.fk(q)
        np.testing.assert_allclose(pose.position, data.site_xpos[site], atol=1e-9)
        rotation = data.site_xmat[site].reshape(3, 3)
        np.testing.assert_allclose(pose.rotation, rotation, atol=1e-9)
        assert yaw_of(rotation) == pytest.approx(sim_ik.yaw_of(rotation), abs=1e-9)


def test_defaults_match_the_sim_cell():
    assert CFG.joint_names == robot.ROS_JOINT_NAMES
    np.testing.assert_allclose(CFG.home_q, robot.RobotConfig().home_qpos)
    box = cell.WorkspaceBox()
    assert (CFG.yaw_min, CFG.yaw_max) == pytest.approx(box.yaw)
    assert CFG.gripper_max_opening == pytest.approx(robot.MAX_OPENING)


def test_free_space_volumes_are_the_sim_bins_interiors():
    """Each bin's box lies inside that bin's walls (2 cm clear of them, 5 mm of the chute over
    the middle walls), spans the sim's old workspace heights, and the transit height clears
    the walls and the chute with the fingertips and 5 cm to spare."""
    scene = scene_mod.SceneConfig()
    box = cell.WorkspaceBox()
    for which in ("right", "left"):
        low = np.array(getattr(CFG, f"{which}_bin_low"))
        high = np.array(getattr(CFG, f"{which}_bin_high"))
        centre, half = scene.bin_center(which), scene.bin_half(which)
        np.testing.assert_allclose(low[:2], centre - half + 0.02, atol=1e-9)
        if which == "right":  # the chute comes down to 0.040 m short of the hinge, in it
            chute_y = scene.hinge_point[1] - 0.040
            assert high[1] == pytest.approx(chute_y - 0.005)
            assert high[0] == pytest.approx(centre[0] + half[0] - 0.02)
        else:
            np.testing.assert_allclose(high[:2], centre + half - 0.02, atol=1e-9)
        assert low[2] == pytest.approx(scene.floor_z + box.height[0])
        assert high[2] == pytest.approx(scene.floor_z + box.height[1])
    chute_top = scene.rim_z + 0.008
    assert CFG.transit_height >= chute_top + robot.FINGERTIP_BELOW_TCP + 0.05


def test_joint_limits_are_the_sim_arms():
    sim = cell.SimCell(seed=0)
    try:
        np.testing.assert_allclose(sim.arm_range[:, 1], CFG.joint_position_limits, atol=1e-6)
        np.testing.assert_allclose(
            sim.arm_range[:, 0], -np.array(CFG.joint_position_limits), atol=1e-6
        )
    finally:
        sim.close()


def test_present_pose_matches_the_sim_cell():
    np.testing.assert_allclose(CFG.present_q, robot.RobotConfig().present_qpos)
