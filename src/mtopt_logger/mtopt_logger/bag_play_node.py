"""mtopt-bag-play: publish recorded episode bags again (the stand-in for `ros2 bag play`).

    mtopt-bag-play DIR_OR_BAG [DIR_OR_BAG ...] [--rate X | --as-fast-as-possible] [--loop]
                   [--topics T1,T2] [--remap-namespace /cell0:/cell5]
                   [--wait-for-subscribers] [--delay S]

Thin glue around `mtopt_logger.bag_play.BagPlayer`: one publisher per (topic, type) found in
the bags (reliable, keep-last 100), created before the first message; the bags' serialized
CDR bytes are published unchanged. Messages published before DDS discovery matched a
subscriber never reach it (volatile durability, as with `ros2 bag play`), so the first message
waits `--delay` (default 1 s) and, with `--wait-for-subscribers`, until every played topic has
a subscriber; on a loaded machine discovery can take longer than the default delay (measured:
more than 1 s at load average 11 on 2 cores), and a line names the topics still unmatched.

Exit codes: 0 when every bag played (also after Ctrl-C / SIGTERM, which stop cleanly after a
summary), 1 when a path gave no bag or a bag was skipped as unreadable, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.utilities import remove_ros_args

from mtopt_bridge.node_main import run_node
from mtopt_logger.bag_play import BagPlayer, NamespaceRemap, PlayMessage, resolve_bag_paths

QUEUE_DEPTH = 100
ACK_TIMEOUT_S = 5.0
DEFAULT_DELAY_S = 1.0
WAITING_REPORT_S = 5.0


def resolve_message_class(msgtype: str):
    """`pkg/msg/Name` -> its rclpy message class (rosidl_runtime_py when installed, else
    `importlib` of `pkg.msg`). Raises ImportError naming the type."""
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        get_message = None
    try:
        if get_message is not None:
            return get_message(msgtype)
        package, interface, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{interface}"), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise ImportError(f"cannot import message type {msgtype} ({exc})") from exc


class BagPlayNode(Node):
    """Owns one publisher per topic; `publish` sends a `PlayMessage`'s bytes unchanged.

    Topics whose type does not import are left out and listed in `unresolved`
    (topic -> reason); `publish` must not be given their messages.
    """

    def __init__(self, topic_types: dict[str, str], queue_depth: int = QUEUE_DEPTH, **kwargs):
        super().__init__("bag_play", **kwargs)
        qos = QoSProfile(depth=queue_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.unresolved: dict[str, str] = {}
        self._play_publishers = {}
        for topic, msgtype in sorted(topic_types.items()):
            try:
                message_class = resolve_message_class(msgtype)
                publisher = self.create_publisher(message_class, topic, qos)
            except Exception as exc:  # type not importable, or an invalid remapped name
                self.unresolved[topic] = str(exc)
                continue
            self._play_publishers[topic] = (publisher, message_class)
        self._raw_publish = True  # this rclpy publishes bytes; older ones raise TypeError

    def unmatched_topics(self) -> list[str]:
        """Topics no subscriber is matched to yet (messages published there are lost)."""
        return sorted(
            topic
            for topic, pub in self.play_publishers.items()
            if pub.get_subscription_count() < 1
        )

    @property
    def play_publishers(self) -> dict:
        """Topic -> rclpy Publisher."""
        return {topic: pub for topic, (pub, _) in self._play_publishers.items()}

    def publish(self, message: PlayMessage) -> None:
        publisher, message_class = self._play_publishers[message.topic]
        if self._raw_publish:
            try:
                publisher.publish(message.data)
                return
            except TypeError:  # rclpy without serialized publishing
                self._raw_publish = False
        publisher.publish(deserialize_message(message.data, message_class))

    def wait_for_acks(self, timeout_s: float = ACK_TIMEOUT_S) -> bool:
        """Wait until reliable subscribers acknowledged everything (so nothing is lost when the
        process exits right after the last message). True when all did in time."""
        return all(
            pub.wait_for_all_acked(Duration(seconds=timeout_s))
            for pub in self.play_publishers.values()
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mtopt-bag-play",
        description="Publish episode bags with their recorded timing (ros2 bag play stand-in).",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="DIR_OR_BAG",
        help="a bag (directory with metadata.yaml) or a directory of episode bags"
        " (complete bags, name order)",
    )
    parser.add_argument(
        "--rate", type=float, default=1.0, help="speed factor (2: twice as fast; 0: no waiting)"
    )
    parser.add_argument(
        "--as-fast-as-possible", action="store_true", help="same as --rate 0 (no waiting)"
    )
    parser.add_argument("--loop", action="store_true", help="replay all bags until Ctrl-C")
    parser.add_argument(
        "--topics", default=None, help="comma-separated recorded topic names to play (default all)"
    )
    parser.add_argument(
        "--remap-namespace",
        action="append",
        default=[],
        metavar="OLD:NEW",
        help="publish topics under namespace OLD under NEW instead, e.g. /cell0:/cell5"
        " (repeatable; the first match applies)",
    )
    parser.add_argument(
        "--wait-for-subscribers",
        action="store_true",
        help="before the first message, wait until every played topic has a subscriber",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=None,
        help="seconds between creating the publishers (or, with --wait-for-subscribers, their"
        " matching) and the first message, for DDS discovery (default 1.0, or 0 with"
        " --wait-for-subscribers)",
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        help="seconds between progress lines while a bag plays (default 5)",
    )
    args = parser.parse_args(argv)
    if args.as_fast_as_possible:
        args.rate = 0.0
    if not args.rate >= 0:
        parser.error(f"--rate must be >= 0, got {args.rate}")
    if args.delay is None:
        args.delay = 0.0 if args.wait_for_subscribers else DEFAULT_DELAY_S
    if not args.delay >= 0:
        parser.error(f"--delay must be >= 0, got {args.delay}")
    try:
        args.remaps = [NamespaceRemap(spec) for spec in args.remap_namespace]
    except ValueError as exc:
        parser.error(f"--remap-namespace: {exc}")
    if args.topics is not None:
        args.topics = [t.strip() for t in args.topics.split(",") if t.strip()]
        if not args.topics:
            parser.error("--topics is empty")
    return args


def _wait_for_subscribers(node: BagPlayNode, player: BagPlayer, say) -> None:
    """Block until every publisher has a matched subscriber, or the player is stopped."""
    next_report = 0.0
    while not player.stopped:
        unmatched = node.unmatched_topics()
        if not unmatched:
            return
        now = time.monotonic()
        if now >= next_report:
            say(f"waiting for subscribers on {', '.join(unmatched)}")
            next_report = now + WAITING_REPORT_S
        player.wait(0.05)


def main(args: list[str] | None = None) -> int:
    """Play the bags named on the command line; see the module docstring for exit codes."""
    argv = list(sys.argv if args is None else args)
    options = parse_args(remove_ros_args(argv)[1:])

    def say(line: str) -> None:
        print(line, flush=True)

    bags, failures = resolve_bag_paths(options.paths)
    for failure in failures:
        say(f"skipping {failure}")
    node: BagPlayNode | None = None
    player = BagPlayer(
        bags,
        lambda message: node.publish(message),
        rate=options.rate,
        topics=options.topics,
        remaps=options.remaps,
        loop=options.loop,
        report=say,
        progress_interval_s=options.progress_interval,
    )
    player.summary.failures.extend(failures)

    def make_node() -> BagPlayNode:
        nonlocal node
        node = BagPlayNode(player.scan())
        for topic, reason in node.unresolved.items():
            say(f"not publishing {topic}: {reason}")
            player.excluded.add(topic)
        return node

    def play(node: BagPlayNode, _executor) -> int:
        rate = "as fast as possible" if options.rate == 0 else f"rate {options.rate:g}"
        say(
            f"playing {len(bags)} bag(s), {len(node.play_publishers)} topic(s), {rate}"
            + (", looping" if options.loop else "")
        )
        if options.wait_for_subscribers:
            _wait_for_subscribers(node, player, say)
        if options.delay > 0:
            player.wait(options.delay)
        unmatched = node.unmatched_topics()
        if unmatched and not player.stopped:
            say(
                f"no subscriber yet on {', '.join(unmatched)}: messages there are lost until one"
                " is matched (see --wait-for-subscribers, --delay)"
            )
        summary = player.play()
        if not summary.interrupted:
            node.wait_for_acks()
        say(summary.describe())
        return 1 if summary.failures or not bags else 0

    # Our own handlers instead of rclpy's: a signal only asks the player to stop, so a summary
    # is always printed.
    previous = {
        sig: signal.signal(sig, lambda *_: player.stop())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return run_node(
            make_node, "mtopt-bag-play", args=argv, main_loop=play, ros_signal_handlers=False
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
