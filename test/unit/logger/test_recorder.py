"""EpisodeRecorder (the logger's logic, no node): subsampling grid, final frames, refusals."""

import numpy as np
import pytest
from rclpy.serialization import serialize_message

from mtopt_bridge.image import numpy_to_image
from mtopt_core.episode_bag import list_episode_bags, read_bag_messages
from mtopt_interfaces.msg import EpisodeInfo
from mtopt_logger.config import ConfigError, LoggerConfig
from mtopt_logger.recorder import EpisodeRecorder, Outcome, RecorderError, find_stale_parts

CAMERA = "/c/camera/overhead/image_raw"
MS = 1_000_000


def _frame(value: int) -> bytes:
    return serialize_message(numpy_to_image(np.full((2, 2, 3), value % 256, np.uint8)))


def test_camera_frames_follow_a_rate_grid_and_the_newest_is_kept_at_finish(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    recorder.start("e")
    # 30 Hz for 1 s (frames 0..29), then a 1 s pause, then two more frames.
    arrivals = [round(i * 1000 / 30) * MS for i in range(30)] + [2000 * MS, 2040 * MS]
    kept = [i for i, t in enumerate(arrivals) if recorder.record_camera(CAMERA, t, _frame(i))]
    # Grid at 0, 200, 400, ... ms: the first frame at or after each grid point; after the
    # pause the grid restarts at the frame at 2000 ms.
    assert kept == [0, 6, 12, 18, 24, 30]
    info = EpisodeInfo(episode_id="e", steps=3)
    finished = recorder.finish("/c/episode_info", serialize_message(info), 1500 * MS)
    assert finished.path == tmp_path / "e" and finished.message_counts[CAMERA] == 7
    messages = list(read_bag_messages(finished.path))
    values = [int(m.message.data[0]) for m in messages if m.topic == CAMERA]
    assert values == [0, 6, 12, 18, 24, 30, 31]  # 31: the newest frame, written at finish
    # The EpisodeInfo is stamped after everything else although finish was given 1500 ms.
    assert messages[-1].topic == "/c/episode_info" and messages[-1].message.steps == 3
    assert messages[-1].timestamp_ns > 2040 * MS


def test_refusals_and_discard(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    with pytest.raises(RecorderError, match="no episode is recording") as refused:
        recorder.finish("/i", b"", 0)
    assert refused.value.outcome is Outcome.NOT_RECORDING
    assert not recorder.record("/t", "sensor_msgs/msg/Image", 1, _frame(1))  # not recording
    part = recorder.start("a")
    assert part == tmp_path / "a.part" and part.is_dir()
    with pytest.raises(RecorderError, match="'a' is still recording") as refused:
        recorder.start("b")
    assert refused.value.outcome is Outcome.ALREADY_RECORDING
    assert recorder.record("/t", "sensor_msgs/msg/Image", 1, _frame(1))
    assert find_stale_parts(tmp_path) == [part]
    finished = recorder.finish("/i", b"", 2, discard=True)
    assert finished.path is None and not part.exists() and list_episode_bags(tmp_path) == []
    with pytest.raises(RecorderError, match="invalid episode id") as refused:
        recorder.start("x/y")
    assert refused.value.outcome is Outcome.BAD_REQUEST
    greedy = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=1e12)
    with pytest.raises(
        RecorderError, match=r"free disk \d+\.\d\d GB .* below min_free_disk_gb"
    ) as refused:
        greedy.start("c")
    assert refused.value.outcome is Outcome.LOW_DISK


def test_an_id_already_used_is_a_bad_request_and_a_failed_write_is_reported(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    recorder.start("a")
    assert recorder.finish("/i", b"", 1).path == tmp_path / "a"
    with pytest.raises(RecorderError, match="exists already") as refused:
        recorder.start("a")
    assert refused.value.outcome is Outcome.BAD_REQUEST
    # A file where the episode directory should be: the bag cannot be created.
    blocked = EpisodeRecorder(tmp_path / "a" / "metadata.yaml", 5.0, min_free_disk_gb=0.0)
    with pytest.raises(RecorderError, match="cannot start episode 'b'") as refused:
        blocked.start("b")
    assert refused.value.outcome is Outcome.WRITE_FAILED


def test_config_validation_names_the_parameter():
    LoggerConfig().validate()
    with pytest.raises(ConfigError, match="camera_rate_hz"):
        LoggerConfig(camera_rate_hz=0.0).validate()
    with pytest.raises(ConfigError, match="topic_types"):
        LoggerConfig(topics=("a",), topic_types=("sensor_msgs/Image",)).validate()
    with pytest.raises(ConfigError, match="same length"):
        LoggerConfig(topics=("a", "b"), topic_types=("sensor_msgs/msg/Image",)).validate()
    with pytest.raises(ConfigError, match="recorded twice"):
        LoggerConfig(
            topics=("camera/overhead/image_raw",), topic_types=("sensor_msgs/msg/Image",)
        ).validate()
