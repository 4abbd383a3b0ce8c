"""policy_node's observation path: the camera frame's `policy_roi` crop, resized to
`image_size` with the shared `mtopt_core.images.policy_image`, is what the policy acts on and
what `policy/observation` carries."""

import math

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter

from mtopt_bridge.image import image_to_numpy, numpy_to_image
from mtopt_core.images import policy_image
from mtopt_interfaces.msg import GripperState
from mtopt_policy.policy_node import PolicyNode, _RosCellPort


@pytest.fixture
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("roi", [[0.0, 0.0, 1.0, 1.0], [0.25, 0.0, 0.75, 1.0]])
def test_observe_acts_on_the_roi_of_the_camera_frame(context, roi):
    node = PolicyNode(
        context=context,
        parameter_overrides=[
            Parameter("policy_roi", value=roi),
            Parameter("image_size", value=16),
        ],
    )
    try:
        assert list(node.config.policy_roi) == roi
        frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        node.camera.put(numpy_to_image(frame, "rgb8"))
        node.gripper_state.put(GripperState(closed=True, height=0.1, object_detected=False))
        obs = _RosCellPort(node, None).observe(-math.inf)
        np.testing.assert_array_equal(obs.image, policy_image(frame, 16, roi))
        np.testing.assert_array_equal(image_to_numpy(obs.image_msg, "rgb8"), obs.image)
        assert obs.gripper_closed and obs.height == pytest.approx(0.1)
    finally:
        node.destroy_node()


def test_a_malformed_frame_is_dropped_counted_and_the_valid_one_observed(context):
    node = PolicyNode(context=context, parameter_overrides=[Parameter("image_size", value=16)])
    try:
        frame = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        node._on_camera(numpy_to_image(frame, "rgb8"))
        bad = numpy_to_image(frame, "rgb8")
        bad.data = bad.data[:-3]  # a frame cut short
        node._on_camera(bad)
        assert node.malformed_frames == 1 and node.camera.count == 1
        node.gripper_state.put(GripperState(closed=False, height=0.1, object_detected=False))
        obs = _RosCellPort(node, None).observe(-math.inf)
        np.testing.assert_array_equal(obs.image, frame)
    finally:
        node.destroy_node()
