"""Episode bags: one rosbag2 bag (MCAP storage, zstd-compressed chunks) per episode.

This is the project's one writer and reader of episode bags; it uses `rosbags`, so it needs
neither rclpy nor rosbag2_py, and the files it writes open in stock tools (rosbags, the `mcap`
library, Foxglove, `ros2 bag` on a full install).

Atomicity: a bag is written as `<episode_dir>/<episode_id>.part/` and renamed to
`<episode_dir>/<episode_id>/` only after it was closed and fsynced, so a crash never leaves a
half episode that looks whole. Readers skip `.part` directories. A writer killed mid-episode
leaves its `.part` behind; `remove_stale_parts` deletes those of given cells (what the logger
does for its own cell when it starts, and bulk collection for its cells), never another cell's:
several cells' writers may share a directory and be writing right now.

Recording is live and lossless: the logger hands the serialized CDR bytes it received from DDS
(`rclpy` subscriptions with `raw=True`) to `write_serialized`; nothing is re-encoded.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import (
    CompressionFormat,
    CompressionMode,
    Reader,
    StoragePlugin,
    Writer,
)
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from mtopt_core.atomic_io import fsync_dir
from mtopt_core.episodes import episode_cell, episode_id_problem

PART_SUFFIX = ".part"
INTERFACES_PACKAGE = "mtopt_interfaces"


class EpisodeBagError(RuntimeError):
    """A bag cannot be written or read. The message names the bag and the reason."""

    def __init__(self, path: Path | str, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def interface_definition_dirs() -> list[Path]:
    """Where the .msg files of mtopt_interfaces live: the install prefix, else the source tree."""
    dirs = [Path(sys.prefix) / "share" / INTERFACES_PACKAGE / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / INTERFACES_PACKAGE / "msg")
    for parent in Path(__file__).resolve().parents:
        dirs.append(parent / "src" / INTERFACES_PACKAGE / "msg")
    return [d for d in dirs if d.is_dir()]


@lru_cache(maxsize=1)
def make_typestore() -> Typestore:
    """A ROS 2 Kilted typestore with every mtopt_interfaces message registered."""
    store = get_typestore(Stores.ROS2_KILTED)
    dirs = interface_definition_dirs()
    if not dirs:
        raise FileNotFoundError(
            f"no {INTERFACES_PACKAGE}/msg definitions found; run `make setup` (builds and installs"
            f" {INTERFACES_PACKAGE} into the venv)"
        )
    types: dict[str, Any] = {}
    for path in sorted(dirs[0].glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{INTERFACES_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(path)


class EpisodeBagWriter:
    """Writes one episode bag under a `.part` name; `finish()` makes it visible atomically.

    Usage::

        with EpisodeBagWriter(episode_dir, episode_id) as bag:
            bag.write_serialized("/cell0/policy/step", "mtopt_interfaces/msg/PolicyStep", t, raw)
            bag.finish()   # without finish(), leaving the block discards the partial bag
    """

    def __init__(
        self, episode_dir: Path | str, episode_id: str, typestore: Typestore | None = None
    ):
        problem = episode_id_problem(episode_id)
        if problem:  # the id becomes a directory name
            raise ValueError(f"invalid episode id {episode_id!r}: {problem}")
        self.episode_dir = Path(episode_dir)
        self.episode_id = episode_id
        self.final_path = self.episode_dir / episode_id
        self.part_path = self.episode_dir / f"{episode_id}{PART_SUFFIX}"
        if self.final_path.exists():
            raise EpisodeBagError(self.final_path, "an episode with this id exists already")
        if self.part_path.exists():  # leftover of a crashed run with the same id: never resumed
            shutil.rmtree(self.part_path)
        self.episode_dir.mkdir(parents=True, exist_ok=True)
        self.typestore = typestore or make_typestore()
        self._writer = Writer(self.part_path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self._open = True
        self.message_count = 0

    def _connection(self, topic: str, msgtype: str):
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise ValueError(f"topic {topic} already carries {connection.msgtype}, not {msgtype}")
        return connection

    def write_serialized(self, topic: str, msgtype: str, timestamp_ns: int, data) -> None:
        """Store a message exactly as received (CDR bytes), e.g. from an rclpy raw subscription."""
        self._writer.write(self._connection(topic, msgtype), int(timestamp_ns), data)
        self.message_count += 1

    def write(self, topic: str, msgtype: str, timestamp_ns: int, message: Any) -> None:
        """Serialize a rosbags message object (from `typestore.types[...]`) and store it."""
        self.write_serialized(
            topic, msgtype, timestamp_ns, self.typestore.serialize_cdr(message, msgtype)
        )

    def finish(self) -> Path:
        """Close, fsync and rename `<id>.part` to `<id>`; returns the final path."""
        if not self._open:
            raise EpisodeBagError(self.part_path, "bag is already closed")
        self._writer.close()
        self._open = False
        _fsync_tree(self.part_path)
        os.rename(self.part_path, self.final_path)
        fsync_dir(self.episode_dir)
        return self.final_path

    def discard(self) -> None:
        """Drop the partial bag (nothing becomes visible)."""
        if self._open:
            try:
                self._writer.close()
            finally:
                self._open = False
        shutil.rmtree(self.part_path, ignore_errors=True)

    def __enter__(self) -> EpisodeBagWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._open:
            self.discard()


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int
    message: Any  # rosbags message dataclass


def list_episode_bags(episode_dir: Path | str) -> list[Path]:
    """Complete episode bags in a directory (never `.part`), sorted by name."""
    root = Path(episode_dir)
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.endswith(PART_SUFFIX) and (p / "metadata.yaml").is_file()
    )


def find_stale_parts(episode_dir: Path | str, cells: Collection[int] | None = None) -> list[Path]:
    """`<id>.part` bag directories under `episode_dir`, sorted by name: every one, or with
    `cells` only those whose id names one of these cells (`cell<k>_...`). A `.part` is a bag
    being written, or one left by a killed or crashed writer; only its cell can tell which."""
    root = Path(episode_dir)
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.name.endswith(PART_SUFFIX)
        and p.is_dir()
        and (cells is None or episode_cell(p.name) in cells)
    )


def remove_stale_parts(
    episode_dir: Path | str, cells: Collection[int] | None, keep: Collection[Path] = ()
) -> list[Path]:
    """Delete the `.part` bags of `cells` under `episode_dir` (None: of every cell, safe only
    when no other writer uses the directory), except those in `keep`; returns those now gone,
    sorted by name.

    Call it only when no writer of these cells runs: a live writer's `.part` looks the same."""
    removed = []
    for part in find_stale_parts(episode_dir, cells):
        if part in keep:
            continue
        shutil.rmtree(part, ignore_errors=True)
        if not part.exists():
            removed.append(part)
    return removed


def read_bag_messages(
    path: Path | str, topics: Iterable[str] | None = None, typestore: Typestore | None = None
) -> Iterator[BagMessage]:
    """Decode the messages of a bag in time order (optionally only some topics).

    A bag that is missing, truncated or corrupt raises EpisodeBagError naming it and the reason.
    """
    path = Path(path)
    if path.name.endswith(PART_SUFFIX):
        raise EpisodeBagError(path, "bag is still being written (.part)")
    store = typestore or make_typestore()
    wanted = set(topics) if topics is not None else None
    try:
        with Reader(path) as reader:
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for connection, timestamp, raw in reader.messages(connections=connections):
                message = store.deserialize_cdr(raw, connection.msgtype)
                yield BagMessage(connection.topic, connection.msgtype, timestamp, message)
    except EpisodeBagError:
        raise
    except Exception as exc:  # rosbags raises several types for damaged files
        raise EpisodeBagError(path, f"unreadable bag ({type(exc).__name__}: {exc})") from exc
