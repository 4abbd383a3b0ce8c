"""Episode bags of an in-process simulated cell, written as the ROS logger writes them.

`CellBagWriter` serializes rclpy messages (`rclpy.serialization.serialize_message`, the CDR
bytes DDS would carry) and hands them to the logger's own `mtopt_logger.recorder.
EpisodeRecorder`, so a bag is created, written, closed and renamed by exactly the logger's code:
`<episode_dir>/<id>.part` while recording, `<id>` once complete (fsynced, atomic rename), the
EpisodeInfo stamped after every other message (the last message of the bag), a failed write
discards the partial bag, `start` refuses when the disk is nearly full. The writer records as
`mtopt_core.episodes.SIM_COLLECT_CLOSER` ("mtopt-sim-collect"): the recorder writes that into
every EpisodeInfo's `closed_by` (the learner's default `accepted_closers` include it).

Topics are the logger's defaults (`mtopt_logger.config.LoggerConfig`) under the cell's
namespace `/cell<cell_id>`: `camera/<name>/image_raw` x3, `iiwa/joint_states`,
`gripper/state`, `policy/step`, `policy/observation` and `episode_info`. Bag timestamps are
"receive" times on the wall clock (strictly increasing), headers carry sim time, as in a bag
the logger records from `sim_cell_node`. One difference, by design: the logger subsamples
camera streams to `camera_rate_hz`; here each camera frame is rendered and written once per
policy step, plus the final frames after the episode (what the success detector grades and the
learner takes as the final observation).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message

from mtopt_core.episodes import SIM_COLLECT_CLOSER
from mtopt_logger.config import LoggerConfig
from mtopt_logger.recorder import EpisodeRecorder

INFO_TOPIC = "episode_info"  # logger_node: `resolve_topic_name("episode_info")`


def message_type(msg: Any) -> str:
    """`pkg/msg/Name` of an rclpy message instance."""
    package = type(msg).__module__.split(".", 1)[0]
    return f"{package}/msg/{type(msg).__name__}"


def recorded_topics(config: LoggerConfig | None = None) -> dict[str, str]:
    """Relative topic -> message type of everything the logger records (and `episode_info`)."""
    config = config or LoggerConfig()
    topics = dict.fromkeys(config.camera_topics(), "sensor_msgs/msg/Image")
    topics.update(zip(config.topics, config.topic_types, strict=True))
    topics[INFO_TOPIC] = "mtopt_interfaces/msg/EpisodeInfo"
    return topics


class CellBagWriter:
    """One episode bag at a time for cell `cell_id` (namespace `/cell<cell_id>`).

    Raises `mtopt_logger.recorder.RecorderError` like the logger's services do (`start` when
    the id exists or the disk is full, `finish` when writing failed).
    """

    def __init__(
        self,
        episode_dir: Path | str,
        cell_id: int,
        min_free_disk_gb: float = LoggerConfig.min_free_disk_gb,
        camera_names: tuple[str, ...] = LoggerConfig.camera_names,
        closer: str = SIM_COLLECT_CLOSER,
    ):
        self.namespace = f"/cell{int(cell_id)}"
        # The logger's camera_names (a cell whose policy looks through another camera, e.g.
        # the wrist camera, records that one too).
        self.cameras = tuple(camera_names)
        self.topics = recorded_topics(LoggerConfig(camera_names=self.cameras))
        self.recorder = EpisodeRecorder(episode_dir, LoggerConfig.camera_rate_hz, min_free_disk_gb)
        self.closer = closer  # the requester of every recording: EpisodeInfo.closed_by
        self._token = ""
        self._last_ns = 0

    @property
    def episode_dir(self) -> Path:
        return self.recorder.episode_dir

    def _now_ns(self) -> int:
        # Strictly increasing: messages written back to back keep their order in the bag.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    def start(self, episode_id: str) -> Path:
        """Open `<episode_dir>/<episode_id>.part`; returns that path."""
        recording = self.recorder.start(episode_id, self.closer)
        self._token = recording.token
        return recording.part_path

    def write(self, topic: str, msg: Any) -> None:
        """Record `msg` on the relative `topic` (one of the logger's recorded topics)."""
        msgtype = self.topics.get(topic)
        if msgtype is None:
            raise ValueError(f"{topic!r} is not a topic the logger records: {sorted(self.topics)}")
        if message_type(msg) != msgtype:
            raise ValueError(f"{topic} carries {msgtype}, got {message_type(msg)}")
        self.recorder.record(
            f"{self.namespace}/{topic}", msgtype, self._now_ns(), serialize_message(msg)
        )

    def finish(self, info: Any) -> Path:
        """Write the EpisodeInfo last (`closed_by` = `closer`), close and rename; returns the
        bag's path. `info.episode_id` must be the recording episode's."""
        finished = self.recorder.finish(
            f"{self.namespace}/{INFO_TOPIC}", serialize_message(info), self._now_ns(), self._token
        )
        self._token = ""
        return finished.path

    def abort(self) -> str | None:
        """Drop the episode being recorded, if any; returns its id."""
        self._token = ""
        return self.recorder.abort()
