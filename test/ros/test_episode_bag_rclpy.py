"""Bytes serialized by rclpy (what a raw subscription hands the logger) store and read back."""

import numpy as np
from rclpy.serialization import serialize_message

from mtopt_bridge.image import numpy_to_image
from mtopt_core.episode_bag import EpisodeBagWriter, read_bag_messages
from mtopt_interfaces.msg import EpisodeInfo, PolicyStep


def test_rclpy_serialized_messages_round_trip(tmp_path):
    info = EpisodeInfo(
        episode_id="e",
        cell_id=2,
        task="place-any",
        task_names=["a", "b"],
        sd_probabilities=[0.25, 0.5],
        oracle_success=[False, True],
        has_oracle=True,
        weights_version=7,
        abort_reason="camera overhead stale",
    )
    step = PolicyStep(step=4, action=[0.5, -0.5, 0.0, 1.0, 1.0, 0.0], q_value=0.75)
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    with EpisodeBagWriter(tmp_path, "e") as bag:
        bag.write_serialized(
            "/c/camera/overhead/image_raw",
            "sensor_msgs/msg/Image",
            1,
            serialize_message(numpy_to_image(pixels)),
        )
        bag.write_serialized(
            "/c/policy/step", "mtopt_interfaces/msg/PolicyStep", 2, serialize_message(step)
        )
        bag.write_serialized(
            "/c/episode_info", "mtopt_interfaces/msg/EpisodeInfo", 3, serialize_message(info)
        )
        path = bag.finish()
    image, read_step, read_info = (m.message for m in read_bag_messages(path))
    np.testing.assert_array_equal(np.asarray(image.data).reshape(4, 5, 3), pixels)
    np.testing.assert_allclose(read_step.action, step.action)
    assert read_step.step == 4 and abs(read_step.q_value - 0.75) < 1e-7
    assert (read_info.task, read_info.weights_version) == ("place-any", 7)
    assert read_info.abort_reason == "camera overhead stale"
    assert list(read_info.oracle_success) == [False, True]
