"""The learner's `augment_translate` warps a wrist image as if the gripper had moved sideways
(`mtopt_core.translate`). Against the simulated wrist camera: the warped image of the start
pose is much closer to the image the camera renders after the move than the unwarped one,
for tool-frame moves along x, along y and both; with x not reversed it is not."""

import numpy as np
import pytest

from mtopt_core.action import to_base_frame
from mtopt_core.translate import ACTION_TO_CAMERA_FRAME, finger_mask, translate_images
from mtopt_sim.env import EnvConfig, MTOptCell

STARTS = [(0.56, -0.40, 0.28, 0.3), (0.62, -0.33, 0.28, -0.8), (0.52, -0.30, 0.27, 1.2),
          (0.60, -0.45, 0.29, 0.0)]  # fmt: skip  # x, y, z [m], yaw [rad] over the right bin
MOVES = [(0.6, 0.0), (0.0, 0.6), (-0.5, 0.4)]  # normalized tool-frame moves


@pytest.fixture(scope="module")
def pairs():
    env = MTOptCell(EnvConfig(policy_camera="wrist", image_size=64, action_frame="tool"))
    out = []
    try:
        for k, (x, y, z, yaw) in enumerate(STARTS):
            for move in MOVES:
                obs, _ = env.reset(seed=k, options={"task": "lift-any", "start": (x, y, z)})
                env.move_to(env.cell.tcp_pose()[0], yaw)
                obs = env.observation()
                before, measured_yaw = env.cell.tcp_pose()
                after_obs, *_ = env.step(np.array([*move, 0, 0, 0, 0], np.float32))
                after, _ = env.cell.tcp_pose()
                # The move the arm made, in the tool frame of the start pose.
                tool_x = to_base_frame([1.0, 0.0, 0.0], measured_yaw, "tool")[:2]
                tool_y = to_base_frame([0.0, 1.0, 0.0], measured_yaw, "tool")[:2]
                moved = np.array([(after - before)[:2] @ tool_x, (after - before)[:2] @ tool_y])
                height = float(obs["gripper_height"][0])
                out.append((obs["image"], after_obs["image"], moved, height))
    finally:
        env.close()
    return out


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.mark.parametrize("move", range(len(MOVES)))
def test_the_warped_start_image_looks_like_the_image_after_the_move(pairs, move):
    keep = finger_mask(np.stack([p[0] for p in pairs]), min_images=4)
    assert keep is not None and 0.05 < keep.mean() < 0.5  # the fingers and palm
    rows = pairs[move :: len(MOVES)]
    plain = np.mean([mean_error(a, b) for a, b, *_ in rows])

    def warped(sign: np.ndarray) -> float:
        return np.mean([
            mean_error(translate_images(a[None], (m * sign)[None], np.array([h - 0.03]), keep)[0],
                       b)
            for a, b, m, h in rows
        ])  # fmt: skip

    right = warped(ACTION_TO_CAMERA_FRAME)
    assert right < 0.6 * plain, (right, plain)
    if MOVES[move][0] != 0.0:  # the x reversal matters
        assert right < 0.8 * warped(np.abs(ACTION_TO_CAMERA_FRAME)), right
