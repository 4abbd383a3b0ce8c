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
    floor = cell.CellConfig().scene.floor_z
    np.testing.assert_allclose(CFG.workspace_low, [box.x[0], box.y[0], floor + box.height[0]])
    np.testing.assert_allclose(CFG.workspace_high, [box.x[1], box.y[1], floor + box.height[1]])
    assert (CFG.yaw_min, CFG.yaw_max) == pytest.approx(box.yaw)
    assert CFG.gripper_max_opening == pytest.approx(robot.MAX_OPENING)


def test_present_pose_matches_the_sim_cell():
    np.testing.assert_allclose(CFG.present_q, robot.RobotConfig().present_qpos)
