"""Parameters of the logger node: one dataclass, the defaults of the ROS parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mtopt_bridge.params import ConfigError

_TYPE_NAME = re.compile(r"^[A-Za-z_]\w*/msg/[A-Za-z_]\w*$")
_CAMERA_NAME = re.compile(r"^[A-Za-z_]\w*$")
_CELL_NAMESPACE = re.compile(r"(?:^|/)cell(\d+)$")


@dataclass(frozen=True)
class LoggerConfig:
    """Logger node parameters (declared as ROS parameters with these defaults).

    Topic names are relative, so they resolve in the node's namespace (one logger per cell);
    the bag stores the fully resolved names (e.g. `/cell0/policy/step`).
    """

    # Directory of episode bags: `<id>.part/` while recording, `<id>/` when complete.
    episode_dir: str = "episodes"
    # Cameras recorded from `camera/<name>/image_raw` (sensor_msgs/Image), subsampled.
    camera_names: tuple[str, ...] = ("overhead", "left_shoulder", "right_shoulder")
    # Rate camera frames are subsampled to [Hz]; the newest frame is always kept at finish.
    camera_rate_hz: float = 5.0
    # Other topics, recorded completely; `topic_types[i]` is the type of `topics[i]`.
    topics: tuple[str, ...] = (
        "iiwa/joint_states",
        "gripper/state",
        "policy/step",
        "policy/observation",
    )
    topic_types: tuple[str, ...] = (
        "sensor_msgs/msg/JointState",
        "mtopt_interfaces/msg/GripperState",
        "mtopt_interfaces/msg/PolicyStep",
        "sensor_msgs/msg/Image",
    )
    # `logger/start` refuses when less than this is free on the disk of episode_dir [GB].
    min_free_disk_gb: float = 1.0
    # The cell whose `<id>.part` leftovers (ids `cell<k>_...`, as the collectors name them) the
    # logger deletes at startup, before recording anything: a logger of this cell killed
    # mid-episode left them. -1: the k of the node's namespace `.../cell<k>` (as the launch
    # files put each cell); when that is not of this form either, nothing is deleted.
    cell_id: int = -1
    # Also delete the `.part` directories of every other cell (and of ids without a cell) at
    # startup. Default: only report them, since a directory shared by several cells' loggers
    # may hold another logger's live episode.
    remove_stale_parts: bool = False
    # History depth of the reliable subscriptions (non-camera topics).
    queue_depth: int = 100
    # `logger/start` waits up to this long [s] until every recorded topic has a matched
    # publisher (as seen by the logger's own subscription). DDS discovery is not symmetric: a
    # publisher may already count the logger as a subscriber while the logger does not know the
    # publisher yet, and reliable samples sent in that gap never reach a volatile reader (the
    # first policy step of an episode would be lost). Topics still unmatched are named in the
    # response and a warning; recording starts anyway.
    publisher_wait_s: float = 2.0

    def validate(self) -> LoggerConfig:
        """Return self, or raise ConfigError naming the first bad parameter."""
        if not self.episode_dir.strip():
            raise ConfigError("episode_dir must not be empty")
        if not self.camera_rate_hz > 0:
            raise ConfigError(f"camera_rate_hz must be > 0, got {self.camera_rate_hz}")
        if not self.min_free_disk_gb >= 0:
            raise ConfigError(f"min_free_disk_gb must be >= 0, got {self.min_free_disk_gb}")
        if self.cell_id < -1:
            raise ConfigError(f"cell_id must be >= 0 (-1: the namespace's), got {self.cell_id}")
        if self.queue_depth < 1:
            raise ConfigError(f"queue_depth must be >= 1, got {self.queue_depth}")
        if not self.publisher_wait_s >= 0:
            raise ConfigError(f"publisher_wait_s must be >= 0, got {self.publisher_wait_s}")
        for name in self.camera_names:
            if not _CAMERA_NAME.match(name):
                raise ConfigError(f"camera_names: {name!r} is not a valid camera name")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"camera_names has duplicates: {list(self.camera_names)}")
        if len(self.topics) != len(self.topic_types):
            raise ConfigError(
                f"topics ({len(self.topics)}) and topic_types ({len(self.topic_types)})"
                " must have the same length"
            )
        for msgtype in self.topic_types:
            if not _TYPE_NAME.match(msgtype):
                raise ConfigError(f"topic_types: {msgtype!r} is not of the form pkg/msg/Name")
        all_topics = [*self.camera_topics(), *self.topics]
        duplicates = {t for t in all_topics if all_topics.count(t) > 1}
        if duplicates:
            raise ConfigError(f"topics: recorded twice: {sorted(duplicates)}")
        return self

    def camera_topics(self) -> list[str]:
        """The (relative) image topic of each camera, in camera_names order."""
        return [f"camera/{name}/image_raw" for name in self.camera_names]


def own_cell(cell_id: int, namespace: str) -> int | None:
    """The logger's cell: `cell_id` when >= 0, else the k of a namespace `.../cell<k>`, else
    None (unknown: the logger then deletes no leftovers of its own)."""
    if cell_id >= 0:
        return cell_id
    match = _CELL_NAMESPACE.search(namespace)
    return int(match.group(1)) if match else None
