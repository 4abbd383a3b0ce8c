"""logger_node: records one rosbag2 bag (MCAP, zstd chunks) per episode.

Services (relative, so namespaced per cell):
  `logger/start`  (mtopt_interfaces/srv/StartEpisode): opens `<episode_dir>/<id>.part` for
      `requester` (who records, e.g. the collector's node name; required) and returns a fresh
      random `token`, which `logger/finish` needs. Refused (ok=false, `outcome` says why, no
      token) while an episode records (ALREADY_RECORDING, naming it in `recording_episode_id`;
      finish it, or finish with discard=true to drop it), when the id does not follow
      `mtopt_core.episodes`, the requester is empty or the bag exists (BAD_REQUEST), when free
      disk is below `min_free_disk_gb` (LOW_DISK), or when the bag cannot be created
      (WRITE_FAILED). The same start again (id and requester of the recording episode: a retry
      after a lost reply) is answered OK with the same token.
      Before opening the bag it waits up to `publisher_wait_s` until every recorded topic
      has a publisher matched to the logger's subscription (DDS discovery is asymmetric;
      samples a publisher sends before the logger knows it are lost); topics still without
      one are named in the response.
  `logger/finish` (mtopt_interfaces/srv/FinishEpisode): writes the request's EpisodeInfo, with
      `closed_by` set to the start's requester, as the last message on `episode_info`, closes
      the bag and renames it to `<id>`; `discard=true` deletes it. Only the recording episode,
      named in `info.episode_id`, with its `token`: anything else is BAD_REQUEST and changes
      nothing (the bag keeps recording). NOT_RECORDING when no episode records; WRITE_FAILED
      when recording or closing failed (the bag is then deleted).

Recording: raw subscriptions (serialized CDR bytes stored as received), camera frames
subsampled (see mtopt_logger.recorder). Bag timestamps are receive times on the node clock.
One executor thread handles recording and the services: while `logger/start` waits for
publishers, samples queue in DDS (`queue_depth`) and are recorded when it returns.
Camera topics are subscribed best-effort (matches reliable and best-effort publishers, as REP
2003 recommends for sensor data); the other topics reliable with `queue_depth`.

Startup, before anything is recorded: the `<id>.part` leftovers of the logger's own cell (ids
`cell<k>_...`; the cell is `cell_id`, by default the k of the namespace `/cell<k>`) are deleted,
with one warning naming how many and which: a logger of this cell killed mid-episode left them.
Other cells' `.part` directories (their loggers may share episode_dir and be recording now) are
only reported, and deleted only with `remove_stale_parts`; readers never see any of them.
Shutdown (SIGINT) while recording discards the partial episode: it has no EpisodeInfo, so no
consumer could use it.
"""

from __future__ import annotations

import importlib
import sys
import time
from functools import partial

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import declare_config, describe_config
from mtopt_interfaces.srv import FinishEpisode, StartEpisode
from mtopt_logger.config import ConfigError, LoggerConfig, own_cell
from mtopt_logger.recorder import IMAGE_TYPE, EpisodeRecorder, Outcome, RecorderError


def import_message_class(msgtype: str):
    """`pkg/msg/Name` -> the rclpy message class. Raises ConfigError if it cannot be imported."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"topic_types: cannot import {msgtype} ({exc})") from exc


class LoggerNode(Node):
    """ROS face of `EpisodeRecorder`: subscriptions, the start/finish services, startup checks."""

    def __init__(self, **kwargs):
        super().__init__("logger", **kwargs)
        self.config = declare_config(self, LoggerConfig)
        self.get_logger().info(f"parameters: {describe_config(self.config)}")
        self.recorder = EpisodeRecorder(
            self.config.episode_dir, self.config.camera_rate_hz, self.config.min_free_disk_gb
        )
        self.info_topic = self.resolve_topic_name("episode_info")
        self._clean_stale_parts()

        camera_qos = qos_profile_sensor_data
        reliable_qos = QoSProfile(
            depth=self.config.queue_depth, reliability=ReliabilityPolicy.RELIABLE
        )
        self._recorded_topics = []
        for topic in self.config.camera_topics():
            self._subscribe(topic, IMAGE_TYPE, camera_qos, camera=True)
        for topic, msgtype in zip(self.config.topics, self.config.topic_types, strict=True):
            self._subscribe(topic, msgtype, reliable_qos, camera=False)

        self.create_service(StartEpisode, "logger/start", self._on_start)
        self.create_service(FinishEpisode, "logger/finish", self._on_finish)
        self.get_logger().info(
            f"ready: recording {len(self._recorded_topics)} topics into"
            f" {self.recorder.episode_dir.absolute()}"
        )

    def _subscribe(self, topic, msgtype, qos, camera: bool) -> None:
        try:
            self.recorder.check_type(msgtype)
        except ValueError as exc:
            raise ConfigError(f"topic_types: {exc}") from exc
        resolved = self.resolve_topic_name(topic)  # with remappings: the name DDS uses
        if camera:
            callback = partial(self._on_camera, resolved)
        else:
            callback = partial(self._on_message, resolved, msgtype)
        subscription = self.create_subscription(
            import_message_class(msgtype), topic, callback, qos, raw=True
        )
        self._recorded_topics.append((resolved, subscription))

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_camera(self, topic: str, data: bytes) -> None:
        self.recorder.record_camera(topic, self._now_ns(), data)

    def _on_message(self, topic: str, msgtype: str, data: bytes) -> None:
        self.recorder.record(topic, msgtype, self._now_ns(), data)

    def _unmatched_topics(self) -> list[str]:
        """Recorded topics without a matched publisher, after waiting up to publisher_wait_s."""
        deadline = time.monotonic() + self.config.publisher_wait_s
        while True:
            unmatched = [t for t, sub in self._recorded_topics if sub.get_publisher_count() < 1]
            if not unmatched or time.monotonic() >= deadline:
                return unmatched
            time.sleep(0.02)

    def _on_start(self, request: StartEpisode.Request, response: StartEpisode.Response):
        try:
            self.recorder.check_start(request.episode_id, request.requester)
            unmatched = [] if self.recorder.episode_id is not None else self._unmatched_topics()
            recording = self.recorder.start(request.episode_id, request.requester)
        except RecorderError as exc:
            response.ok, response.message = False, str(exc)
            response.outcome = getattr(StartEpisode.Response, exc.outcome.name)
            response.recording_episode_id = self.recorder.episode_id or ""
            self.get_logger().warning(f"start refused: {exc}")
            return response
        response.ok, response.outcome = True, StartEpisode.Response.OK
        response.bag_path = str(recording.part_path)
        response.recording_episode_id, response.token = recording.episode_id, recording.token
        response.message = f"recording episode {recording.episode_id} into {recording.part_path}"
        if unmatched:
            response.message += f" (no publisher yet on {', '.join(unmatched)})"
            self.get_logger().warning(
                f"no publisher on {unmatched} after {self.config.publisher_wait_s} s;"
                " recording anyway"
            )
        self.get_logger().info(
            f"{response.message} (cell {request.cell_id}, task {request.task!r},"
            f" requester {request.requester!r})"
        )
        return response

    def _on_finish(self, request: FinishEpisode.Request, response: FinishEpisode.Response):
        try:
            finished = self.recorder.finish(
                self.info_topic,
                serialize_message(request.info),
                self._now_ns(),
                request.token,
                request.discard,
            )
        except RecorderError as exc:
            response.ok, response.message = False, str(exc)
            response.outcome = getattr(FinishEpisode.Response, exc.outcome.name)
            verb = "failed" if exc.outcome is Outcome.WRITE_FAILED else "refused"
            self.get_logger().warning(f"finish {verb}: {exc}")
            return response
        response.ok, response.outcome = True, FinishEpisode.Response.OK
        if finished.path is None:
            response.message = f"episode {finished.episode_id} discarded"
        else:
            response.bag_path = str(finished.path)
            response.message = f"episode {finished.episode_id}: {finished.summary()}"
        self.get_logger().info(response.message)
        return response

    def _clean_stale_parts(self) -> None:
        """Delete this cell's `.part` leftovers (all with remove_stale_parts); report others."""
        cell = own_cell(self.config.cell_id, self.get_namespace())
        cells = None if self.config.remove_stale_parts else () if cell is None else (cell,)
        removed = self.recorder.remove_stale_parts(cells)
        whose = "every cell" if cells is None else f"cell {cell}"
        if removed:
            self.get_logger().warning(
                f"removed {len(removed)} partial episode(s) of {whose} left by a killed or"
                f" crashed logger: {', '.join(p.name for p in removed)}"
            )
        others = self.recorder.stale_parts()
        if others:
            whose = "other cells'" if cell is not None else "unknown cells' (set cell_id)"
            self.get_logger().warning(
                f"{len(others)} partial episode(s) of {whose} left in place:"
                f" {', '.join(p.name for p in others)} (another logger may be writing them;"
                " invisible to readers; remove_stale_parts deletes them at startup)"
            )

    def close(self) -> None:
        """Discard the episode being recorded, if any (called on shutdown)."""
        dropped = self.recorder.abort()
        if dropped is not None:
            self.get_logger().warning(f"shutting down: discarded unfinished episode {dropped}")


def main(args=None) -> int:
    """Run the node until interrupted (exit code 2 on invalid parameters)."""
    # One thread. rclpy's MultiThreadedExecutor (4 threads here before) sometimes left received
    # samples untaken for seconds (measured: 2 of 45 joint states of an episode recorded, though
    # DDS had acknowledged all 45), which recording by receive time turns into lost or misplaced
    # samples (the busy loop behind that is fixed in mtopt_bridge.executors since). One thread
    # also keeps this order: the single-threaded executor takes ready subscriptions before
    # services, so a sample that arrived before logger/finish is recorded in that episode.
    return run_node(LoggerNode, "logger_node", threads=1, args=args)


if __name__ == "__main__":
    sys.exit(main())
