"""Replay of episode bags: the project's stand-in for `ros2 bag play` (no rclpy here).

`BagPlayer` reads bags as raw CDR bytes with rosbags (the project reader
`mtopt_core.episode_bag.read_bag_messages` only yields decoded objects, and rclpy publishes raw
bytes unchanged) and hands every message to a publish callback; `bag_play_node` is the ROS
glue that owns the publishers.

Order and timing: bags play one after another in the order given; within a bag, messages come
in recorded (timestamp) order, and message i is published at `start + (t_i - t_0) / rate`, so
`rate` 2 plays twice as fast and `rate` 0 does not wait at all. The gap between two episodes is
not reproduced: the next bag starts as soon as the previous one ended.

Damaged bags: a bag that cannot be opened, or breaks while it is played, is reported (path and
reason) and skipped, and playing goes on with the next one. A bag that broke is not retried
when looping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2 import Reader

from mtopt_core.episode_bag import PART_SUFFIX, list_episode_bags

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class PlayMessage:
    """One message as it is published: the topic after remapping, bytes as recorded."""

    topic: str  # published name (after namespace remapping)
    msgtype: str  # `pkg/msg/Name`
    timestamp_ns: int  # bag timestamp (receive time when it was recorded)
    data: bytes  # serialized CDR, exactly as stored in the bag
    recorded_topic: str  # name in the bag


@dataclass(frozen=True)
class BagFailure:
    """An argument or bag that could not be played, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PlaySummary:
    """What `BagPlayer.play` did; updated while playing, so it is valid after an interrupt."""

    bags_played: int = 0  # bags played to their end (counted again on every loop pass)
    messages: int = 0  # messages handed to the publish callback
    per_topic: dict[str, int] = field(default_factory=dict)  # published topic -> messages
    failures: list[BagFailure] = field(default_factory=list)
    passes: int = 0  # complete passes over all bags
    elapsed_s: float = 0.0
    interrupted: bool = False  # stop() was called before the end

    def describe(self) -> str:
        state = "interrupted" if self.interrupted else "done"
        lines = [
            f"{state}: {self.bags_played} bag(s) played, {self.messages} messages in"
            f" {self.elapsed_s:.2f} s ({self.passes} complete pass(es));"
            f" {len(self.failures)} bag(s) skipped"
        ]
        lines += [f"  {topic}: {n}" for topic, n in sorted(self.per_topic.items())]
        lines += [f"  skipped {failure}" for failure in self.failures]
        return "\n".join(lines)


class NamespaceRemap:
    """`OLD:NEW` namespace prefix rewrite, e.g. `/cell0:/cell5` maps `/cell0/a/b` to `/cell5/a/b`.

    Both sides are absolute; `/` as OLD prefixes every topic, `/` as NEW strips OLD.
    """

    def __init__(self, spec: str):
        old, sep, new = spec.partition(":")
        if not sep or not old.startswith("/") or not new.startswith("/"):
            raise ValueError(
                f"namespace remap {spec!r} must be OLD:NEW with absolute namespaces,"
                " e.g. /cell0:/cell5"
            )
        self.spec = spec
        self.old, self.new = old.rstrip("/"), new.rstrip("/")

    def apply(self, topic: str) -> str | None:
        """The remapped topic, or None when `topic` is not under OLD."""
        if not self.old:
            return self.new + topic
        if topic == self.old or topic.startswith(self.old + "/"):
            return (self.new + topic[len(self.old) :]) or "/"
        return None


def resolve_bag_paths(arguments: Iterable[str | Path]) -> tuple[list[Path], list[BagFailure]]:
    """Command-line paths -> bag directories, in order.

    A path holding `metadata.yaml` is one bag; any other directory stands for its complete
    episode bags in name order (`list_episode_bags`: never `.part`). Paths that give no bag
    are returned as failures.
    """
    bags: list[Path] = []
    failures: list[BagFailure] = []
    for argument in arguments:
        path = Path(argument)
        if (path / "metadata.yaml").is_file():
            if path.name.endswith(PART_SUFFIX):
                failures.append(BagFailure(path, "bag is still being written (.part)"))
            else:
                bags.append(path)
        elif path.is_dir():
            found = list_episode_bags(path)
            if not found:
                failures.append(BagFailure(path, "no complete episode bags in this directory"))
            bags.extend(found)
        else:
            failures.append(BagFailure(path, "no such bag or directory"))
    return bags, failures


class BagPlayer:
    """Plays bags through `publish(PlayMessage)` with the recorded timing scaled by `rate`.

    Args:
        bags: bag directories, played in this order.
        publish: called once per message, in order (from the thread that runs `play`).
        rate: playback speed factor (> 0), or 0 for as fast as possible.
        topics: recorded topic names to play (None: all).
        remaps: namespace remaps (`NamespaceRemap` or `OLD:NEW` strings); the first that
            matches a topic applies.
        loop: replay all bags until `stop()` is called.
        report: receives progress lines and failure reports (e.g. `print`).
        progress_interval_s: a progress line at most this often while a bag plays.
        clock, wait: monotonic seconds and an interruptible sleep returning True when stopped
            (injectable for tests; default time.monotonic and the stop event's wait).
    """

    def __init__(
        self,
        bags: Sequence[Path | str],
        publish: Callable[[PlayMessage], None],
        *,
        rate: float = 1.0,
        topics: Iterable[str] | None = None,
        remaps: Iterable[NamespaceRemap | str] = (),
        loop: bool = False,
        report: Callable[[str], None] | None = None,
        progress_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ):
        if not rate >= 0:
            raise ValueError(f"rate must be >= 0 (0: as fast as possible), got {rate}")
        self.bags = [Path(b) for b in bags]
        self.publish = publish
        self.rate = float(rate)
        self.topics = set(topics) if topics is not None else None
        self.remaps = [r if isinstance(r, NamespaceRemap) else NamespaceRemap(r) for r in remaps]
        self.loop = loop
        self.report = report or (lambda line: None)
        self.progress_interval_s = progress_interval_s
        self.clock = clock
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        self.summary = PlaySummary()
        self.excluded: set[str] = set()  # published topic names not to play (e.g. no type)
        self._topic_types: dict[str, str] | None = None
        self._broken: set[Path] = set()

    def stop(self) -> None:
        """Ask `play` to return after the current message (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def remap(self, topic: str) -> str:
        for remap in self.remaps:
            mapped = remap.apply(topic)
            if mapped is not None:
                return mapped
        return topic

    def _fail(self, path: Path, reason: str) -> None:
        failure = BagFailure(path, reason)
        self._broken.add(path)
        self.summary.failures.append(failure)
        self.report(f"skipping bag {failure}")

    def scan(self) -> dict[str, str]:
        """Published topic -> message type over all bags (what needs a publisher).

        Bags that cannot be opened, or that give a topic another type than an earlier bag,
        are reported as failures and will not be played.
        """
        if self._topic_types is not None:
            return dict(self._topic_types)
        types: dict[str, tuple[str, Path]] = {}
        for path in self.bags:
            if path in self._broken:
                continue
            try:
                with Reader(path) as reader:
                    found = {
                        self.remap(c.topic): c.msgtype
                        for c in reader.connections
                        if self.topics is None or c.topic in self.topics
                    }
            except Exception as exc:  # rosbags raises several types for damaged bags
                self._fail(path, f"unreadable bag ({type(exc).__name__}: {exc})")
                continue
            conflicts = [
                f"{topic} is {msgtype} here but {types[topic][0]} in {types[topic][1]}"
                for topic, msgtype in sorted(found.items())
                if topic in types and types[topic][0] != msgtype
            ]
            if conflicts:
                self._fail(path, "; ".join(conflicts))
                continue
            for topic, msgtype in found.items():
                types.setdefault(topic, (msgtype, path))
        self._topic_types = {topic: msgtype for topic, (msgtype, _) in types.items()}
        return dict(self._topic_types)

    def iter_messages(self, path: Path) -> Iterator[PlayMessage]:
        """The messages of one bag in recorded order (topic filter, remaps and exclusions
        applied). Raises whatever rosbags raises for a damaged bag."""
        with Reader(path) as reader:
            connections = [
                c
                for c in reader.connections
                if (self.topics is None or c.topic in self.topics)
                and self.remap(c.topic) not in self.excluded
            ]
            if not connections:
                return
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield PlayMessage(
                    topic=self.remap(connection.topic),
                    msgtype=connection.msgtype,
                    timestamp_ns=timestamp,
                    data=raw if isinstance(raw, bytes) else bytes(raw),
                    recorded_topic=connection.topic,
                )

    def _sleep_until(self, due: float) -> bool:
        """Wait until clock() >= due; False when stopped meanwhile."""
        while not self.stopped:
            remaining = due - self.clock()
            if remaining <= 0:
                return True
            if self.wait(remaining):
                return False
        return False

    def _play_bag(self, index: int, path: Path, started: float) -> None:
        label = f"[{index}/{len(self.bags)}] {path}"
        self.report(f"{label}: playing")
        count = 0
        bag_start = self.clock()
        next_progress = bag_start + self.progress_interval_s
        first_ns: int | None = None
        messages = self.iter_messages(path)
        try:
            while True:
                try:
                    message = next(messages, None)
                except Exception as exc:  # damage past the bag's summary shows while reading
                    self._fail(
                        path,
                        f"unreadable bag after {count} messages ({type(exc).__name__}: {exc})",
                    )
                    return
                if message is None:
                    break
                if first_ns is None:
                    first_ns = message.timestamp_ns
                if self.rate > 0:
                    offset_s = (message.timestamp_ns - first_ns) / NS_PER_S / self.rate
                    if not self._sleep_until(bag_start + offset_s):
                        return
                elif self.stopped:
                    return
                self.publish(message)
                count += 1
                self.summary.messages += 1
                per_topic = self.summary.per_topic
                per_topic[message.topic] = per_topic.get(message.topic, 0) + 1
                now = self.clock()
                if now >= next_progress:
                    self.report(f"{label}: {count} messages, elapsed {now - started:.1f} s")
                    next_progress = now + self.progress_interval_s
        finally:
            messages.close()
        self.summary.bags_played += 1
        now = self.clock()
        self.report(
            f"{label}: {count} messages in {now - bag_start:.2f} s, elapsed {now - started:.1f} s"
        )

    def play(self) -> PlaySummary:
        """Play all bags (repeatedly with `loop`) until the end or `stop()`; see `summary`."""
        self.scan()
        started = self.clock()
        try:
            while not self.stopped:
                played_before = self.summary.messages
                for index, path in enumerate(self.bags, start=1):
                    if self.stopped:
                        break
                    if path not in self._broken:
                        self._play_bag(index, path, started)
                if self.stopped:
                    break
                self.summary.passes += 1
                if not self.loop:
                    break
                if self.summary.messages == played_before:
                    self.report("nothing to play; not looping")
                    break
        finally:
            self.summary.interrupted = self.stopped
            self.summary.elapsed_s = self.clock() - started
        return self.summary
