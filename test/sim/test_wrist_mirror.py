"""The wrist camera and the gripper are symmetric about the gripper's x-z plane, the premise of
the learner's `augment_mirror` (`mtopt_core.mirror`): the camera sits in that plane, its image's
horizontal axis is the tool frame's y, and the fingers mirror each other."""

import pytest

from mtopt_core.action import to_base_frame
from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.robot import WRIST_CAMERA
from mtopt_sim.scene import ROBOT_PREFIX


@pytest.fixture(scope="module")
def cell():
    env = MTOptCell(EnvConfig(policy_camera="wrist", image_size=32, action_frame="tool"))
    env.reset(seed=1, options={"task": "lift-any", "start": (0.55, -0.35, 0.35)})
    yield env
    env.close()


@pytest.mark.parametrize("yaw", [0.0, 0.9, -1.3])
def test_the_wrist_camera_and_the_fingers_mirror_about_the_tool_xz_plane(cell, yaw):
    model, data = cell.cell.model, cell.cell.data
    cell.move_to(cell.cell.tcp_pose()[0], yaw)
    tcp, measured_yaw = cell.cell.tcp_pose()
    tool_x = to_base_frame([1.0, 0.0, 0.0], measured_yaw, "tool")
    tool_y = to_base_frame([0.0, 1.0, 0.0], measured_yaw, "tool")
    names = [model.camera(i).name for i in range(model.ncam)]
    cam = names.index(next(n for n in names if n.endswith(WRIST_CAMERA)))
    axes = data.cam_xmat[cam].reshape(3, 3)  # columns: image right, image up, backward
    assert abs(axes[:, 0] @ tool_y) > 0.999  # image rows run along the tool's y
    assert abs(axes[:, 1] @ tool_y) < 1e-3 and abs(axes[:, 2] @ tool_y) < 1e-3
    assert abs((data.cam_xpos[cam] - tcp) @ tool_y) < 1e-4  # the camera is in the plane
    left, right = (
        data.body(f"{ROBOT_PREFIX}finger_{side}").xpos - tcp for side in ("left", "right")
    )
    assert left @ tool_y == pytest.approx(-(right @ tool_y), abs=2e-4)
    assert left @ tool_x == pytest.approx(right @ tool_x, abs=2e-4)
    assert left[2] == pytest.approx(right[2], abs=2e-4)
