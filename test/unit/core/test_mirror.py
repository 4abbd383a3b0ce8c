"""The wrist camera's mirror: images flipped left-right, tool-frame y and yaw negated."""

import numpy as np
import pytest

from mtopt_core.mirror import mirror_actions, mirror_images, mirror_settings_error


def test_only_the_masked_rows_change_and_twice_is_the_identity():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (4, 6)).astype(np.float32)
    mask = np.array([True, False, True, False])
    out = mirror_images(images, mask)
    assert np.array_equal(out[0], images[0][:, ::-1]) and np.array_equal(out[1], images[1])
    assert np.array_equal(mirror_images(out, mask), images)
    moved = mirror_actions(actions, mask)
    assert np.allclose(moved[0], actions[0] * [1, -1, 1, -1, 1, 1])
    assert np.array_equal(moved[1], actions[1])
    assert np.array_equal(mirror_actions(moved, mask), actions)
    assert not np.shares_memory(out, images) and not np.shares_memory(moved, actions)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="mask"):
        mirror_images(np.zeros((2, 4, 4, 3), np.uint8), np.ones(3, bool))
    with pytest.raises(ValueError, match="actions"):
        mirror_actions(np.zeros(6, np.float32), np.ones(1, bool))


def test_only_the_wrist_camera_in_the_tool_frame_is_symmetric():
    assert mirror_settings_error({"policy_camera": "wrist", "action_frame": "tool"}) is None
    why = mirror_settings_error({"policy_camera": "overhead", "action_frame": "tool"})
    assert "policy_camera is 'overhead'" in why and "action_frame" not in why.split(";")[1]
    assert "action_frame is 'base'" in mirror_settings_error(
        {"policy_camera": "wrist", "action_frame": "base"}
    )
