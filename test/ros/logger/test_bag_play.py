"""mtopt-bag-play: BagPlayer order/timing/skipping, the node over DDS, and the console script.

Episode bags are written with the project writer from rclpy-serialized messages (Image,
PolicyStep, EpisodeInfo), as the logger stores them.
"""

import io
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from mcap.reader import make_reader
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from mtopt_bridge.image import numpy_to_image
from mtopt_core.episode_bag import EpisodeBagWriter
from mtopt_interfaces.msg import EpisodeInfo, PolicyStep
from mtopt_logger.bag_play import BagPlayer, NamespaceRemap, PlayMessage, resolve_bag_paths
from mtopt_logger.bag_play_node import BagPlayNode

pytestmark = pytest.mark.ros

BAG_PLAY = Path(sys.executable).parent / "mtopt-bag-play"  # the installed console script
IMAGE = "sensor_msgs/msg/Image"
STEP = "mtopt_interfaces/msg/PolicyStep"
INFO = "mtopt_interfaces/msg/EpisodeInfo"
MS = 1_000_000


def write_episode(directory, episode_id, namespace="/cell0", steps=3, period_ms=100, t0_ns=0):
    """An episode bag: per step a camera frame and a PolicyStep, then the EpisodeInfo.

    Returns the recorded messages in time order as (topic, msgtype, timestamp_ns, bytes).
    """
    recorded = []
    for step in range(steps):
        ns = t0_ns + step * period_ms * MS
        pixels = np.full((4, 6, 3), (step * 40 + len(episode_id)) % 256, np.uint8)
        recorded.append(
            (f"{namespace}/camera/overhead/image_raw", IMAGE, ns, numpy_to_image(pixels))
        )
        action = [0.1 * step, 0.0, -1.0, 0.0, 1.0, float(step)]
        recorded.append(
            (
                f"{namespace}/policy/step",
                STEP,
                ns + MS,
                PolicyStep(episode_id=episode_id, step=step, task="lift-any", action=action),
            )
        )
    info = EpisodeInfo(episode_id=episode_id, cell_id=0, task="lift-any", steps=steps)
    recorded.append((f"{namespace}/episode_info", INFO, t0_ns + steps * period_ms * MS, info))
    recorded = [(t, m, ns, serialize_message(msg)) for t, m, ns, msg in recorded]
    with EpisodeBagWriter(directory, episode_id) as bag:
        for topic, msgtype, ns, data in recorded:
            bag.write_serialized(topic, msgtype, ns, data)
        bag.finish()
    return recorded


def truncate_bag(path: Path) -> None:
    (mcap_file,) = path.glob("*.mcap")
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) // 2])


def collect(bags, **kwargs):
    """Play with rate 0 into a list; returns (messages, summary, report lines)."""
    published, lines = [], []
    player = BagPlayer(bags, published.append, report=lines.append, **kwargs)
    summary = player.play()
    return published, summary, lines


def test_plays_bags_in_order_with_bytes_as_recorded(tmp_path):
    first = write_episode(tmp_path, "ep_a", t0_ns=5_000 * MS)
    second = write_episode(tmp_path, "ep_b", steps=2, t0_ns=1_000 * MS)  # earlier stamps
    bags, failures = resolve_bag_paths([tmp_path])
    assert bags == [tmp_path / "ep_a", tmp_path / "ep_b"] and failures == []

    published, summary, _ = collect(bags, rate=0)
    # Bag by bag in name order, each in recorded order; bytes untouched.
    assert [(m.topic, m.msgtype, m.timestamp_ns, m.data) for m in published] == first + second
    assert summary.bags_played == 2 and summary.messages == 12 and not summary.failures
    assert summary.per_topic["/cell0/policy/step"] == 5 and not summary.interrupted

    # Topic filter on recorded names, namespace remap on what is published.
    steps_only, _, _ = collect(
        bags, rate=0, topics=["/cell0/policy/step"], remaps=["/cell0:/cell5"]
    )
    assert [m.topic for m in steps_only] == ["/cell5/policy/step"] * 5
    assert [deserialize_message(m.data, PolicyStep).step for m in steps_only] == [0, 1, 2, 0, 1]
    assert all(m.recorded_topic == "/cell0/policy/step" for m in steps_only)


def test_namespace_remap_rules():
    remap = NamespaceRemap("/cell0:/cell5")
    assert remap.apply("/cell0/policy/step") == "/cell5/policy/step"
    assert remap.apply("/cell00/policy/step") is None  # a prefix of the name is not a match
    assert NamespaceRemap("/:/sim").apply("/a/b") == "/sim/a/b"
    assert NamespaceRemap("/cell0/:/").apply("/cell0/a") == "/a"
    for bad in ("cell0:/cell5", "/cell0", "/cell0:cell5"):
        with pytest.raises(ValueError, match="OLD:NEW"):
            NamespaceRemap(bad)


def test_timing_follows_recorded_stamps_scaled_by_rate(tmp_path):
    recorded = write_episode(tmp_path, "ep_a", steps=3, period_ms=100)
    offsets_s = [(ns - recorded[0][2]) / 1e9 for _, _, ns, _ in recorded]
    assert offsets_s[-1] == pytest.approx(0.3)

    def play_with_fake_clock(rate):
        now = [100.0]
        waits, times = [], []

        def wait(seconds):
            waits.append(seconds)
            now[0] += seconds
            return False

        player = BagPlayer(
            [tmp_path / "ep_a"],
            lambda m: times.append(now[0] - 100.0),
            rate=rate,
            clock=lambda: now[0],
            wait=wait,
        )
        player.play()
        return times, waits

    times, _ = play_with_fake_clock(2.0)
    assert times == pytest.approx([t / 2 for t in offsets_s])
    times, waits = play_with_fake_clock(0.0)
    assert waits == [] and times == [0.0] * len(recorded)


def test_rate_one_takes_at_least_the_recorded_span(tmp_path):
    # One-sided only: a loaded machine can make playing slower, never faster.
    write_episode(tmp_path, "ep_a", steps=6, period_ms=100)  # spans 0.6 s
    arrivals = []
    player = BagPlayer([tmp_path / "ep_a"], lambda m: arrivals.append(time.monotonic()), rate=1)
    started = time.monotonic()
    summary = player.play()
    assert summary.messages == 13
    assert arrivals[-1] - arrivals[0] >= 0.55 and time.monotonic() - started >= 0.55
    fast = BagPlayer([tmp_path / "ep_a"], lambda m: None, rate=0).play()
    assert fast.messages == 13


def test_corrupt_bag_is_reported_and_skipped(tmp_path):
    first = write_episode(tmp_path, "ep_a")
    write_episode(tmp_path, "ep_b")
    third = write_episode(tmp_path, "ep_c")
    truncate_bag(tmp_path / "ep_b")
    (tmp_path / "ep_d").mkdir()
    (tmp_path / "ep_d" / "metadata.yaml").write_text("rosbag2_bagfile_information: [")

    published, summary, lines = collect(resolve_bag_paths([tmp_path])[0], rate=0)
    assert [m.data for m in published] == [d for *_, d in first + third]
    assert summary.bags_played == 2
    assert [f.path.name for f in summary.failures] == ["ep_b", "ep_d"]
    assert all("unreadable bag" in f.reason for f in summary.failures)
    assert any(str(tmp_path / "ep_b") in line and "unreadable" in line for line in lines)
    assert "skipped" in summary.describe() and "ep_b" in summary.describe()


def test_bag_damaged_inside_a_chunk_breaks_while_playing(tmp_path):
    write_episode(tmp_path, "ep_a")
    write_episode(tmp_path, "ep_b")
    (mcap_file,) = (tmp_path / "ep_a").glob("*.mcap")
    data = bytearray(mcap_file.read_bytes())
    (chunk,) = make_reader(io.BytesIO(bytes(data))).get_summary().chunk_indexes
    # Zero the middle of the zstd chunk; the summary at the end (read on open) stays intact.
    middle = chunk.chunk_start_offset + chunk.chunk_length // 2
    data[middle : middle + 64] = bytes(64)
    mcap_file.write_bytes(bytes(data))

    published, summary, _ = collect([tmp_path / "ep_a", tmp_path / "ep_b"], rate=0, loop=False)
    assert [f.path.name for f in summary.failures] == ["ep_a"]
    assert "unreadable bag after" in summary.failures[0].reason  # broke while playing
    assert summary.bags_played == 1 and published[-1].topic == "/cell0/episode_info"


def test_missing_and_part_paths_are_failures(tmp_path):
    write_episode(tmp_path / "eps", "ep_a")
    part = tmp_path / "eps" / "ep_a.part"
    (tmp_path / "eps" / "ep_a").rename(part)
    bags, failures = resolve_bag_paths([part, tmp_path / "nope", tmp_path / "eps"])
    assert bags == []
    assert [f.reason for f in failures] == [
        "bag is still being written (.part)",
        "no such bag or directory",
        "no complete episode bags in this directory",
    ]


@pytest.fixture
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes = []
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        yield context, executor, nodes, spinner
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        if spinner.is_alive():
            spinner.join(timeout=5)


def test_node_publishes_every_message_to_subscribers(tmp_path, ros_context):
    context, executor, nodes, spinner = ros_context
    recorded = write_episode(tmp_path, "ep_a", namespace="/cell0") + write_episode(
        tmp_path, "ep_b", namespace="/cell0", steps=2
    )
    player = BagPlayer(resolve_bag_paths([tmp_path])[0], None, rate=0, remaps=["/cell0:/cell5"])
    topic_types = player.scan()
    assert topic_types == {
        "/cell5/camera/overhead/image_raw": IMAGE,
        "/cell5/policy/step": STEP,
        "/cell5/episode_info": INFO,
    }
    play_node = BagPlayNode(topic_types, context=context)
    nodes.append(play_node)
    assert play_node.unresolved == {}
    player.publish = play_node.publish

    listener = rclpy.create_node("bag_play_listener", context=context)
    nodes.append(listener)
    received: dict[str, list[bytes]] = {topic: [] for topic in topic_types}
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    classes = {IMAGE: Image, STEP: PolicyStep, INFO: EpisodeInfo}
    for topic, msgtype in topic_types.items():
        listener.create_subscription(
            classes[msgtype], topic, received[topic].append, qos, raw=True
        )
    executor.add_node(listener)
    spinner.start()
    deadline = time.monotonic() + 20
    while any(p.get_subscription_count() < 1 for p in play_node.play_publishers.values()):
        assert time.monotonic() < deadline, "listener never matched the player's publishers"
        time.sleep(0.05)

    summary = player.play()
    assert summary.messages == len(recorded) == 12
    assert play_node.wait_for_acks(10.0)
    assert play_node._raw_publish  # this rclpy published the bag's bytes as they are
    deadline = time.monotonic() + 10
    while sum(map(len, received.values())) < len(recorded) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Per topic: every message, in recorded order, byte-identical; nothing on /cell0.
    for topic in topic_types:
        expected = [d for t, _, _, d in recorded if t.replace("/cell0", "/cell5", 1) == topic]
        assert [bytes(d) for d in received[topic]] == expected, topic
    steps = [deserialize_message(d, PolicyStep) for d in received["/cell5/policy/step"]]
    assert [(s.episode_id, s.step) for s in steps] == [
        ("ep_a", 0),
        ("ep_a", 1),
        ("ep_a", 2),
        ("ep_b", 0),
        ("ep_b", 1),
    ]
    info = deserialize_message(received["/cell5/episode_info"][-1], EpisodeInfo)
    assert (info.episode_id, info.steps) == ("ep_b", 2)


def test_node_falls_back_to_deserializing_when_rclpy_refuses_bytes(ros_context):
    context = ros_context[0]
    node = BagPlayNode({"/t/step": STEP}, context=context)
    ros_context[2].append(node)

    class OldPublisher:  # an rclpy Publisher without serialized publishing
        sent = []

        def publish(self, msg):
            if not isinstance(msg, PolicyStep):
                raise TypeError(f"Expected PolicyStep, got {type(msg)}")
            self.sent.append(msg)

    node._play_publishers["/t/step"] = (OldPublisher(), PolicyStep)
    data = serialize_message(PolicyStep(step=7, task="x"))
    for _ in range(2):
        node.publish(PlayMessage("/t/step", STEP, 0, data, "/t/step"))
    assert [(m.step, m.task) for m in OldPublisher.sent] == [(7, "x"), (7, "x")]
    assert not node._raw_publish


class BagPlayProcess:
    """mtopt-bag-play in a subprocess; its output lines are collected by a reader thread."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen(
            [str(BAG_PLAY), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout=30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"no line with {text!r}:\n{self.output()}"
            time.sleep(0.05)

    def wait(self, timeout=30.0) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return code


def test_console_script_skips_corrupt_bag_and_summarizes(tmp_path):
    write_episode(tmp_path, "ep_a")
    write_episode(tmp_path, "ep_b")
    write_episode(tmp_path, "ep_c", steps=1)
    truncate_bag(tmp_path / "ep_b")
    player = BagPlayProcess(str(tmp_path), "--as-fast-as-possible", "--delay", "0")
    code = player.wait()
    output = player.output()
    assert code == 1, output  # a bag was skipped
    assert f"skipping bag {tmp_path / 'ep_b'}: unreadable bag" in output
    assert "done: 2 bag(s) played, 10 messages" in output and "1 bag(s) skipped" in output
    assert f"[3/3] {tmp_path / 'ep_c'}: 3 messages" in output


def test_console_script_stops_cleanly_on_ctrl_c(tmp_path):
    write_episode(tmp_path, "ep_a", steps=2, period_ms=60_000)  # a minute between steps
    player = BagPlayProcess(
        str(tmp_path / "ep_a"), "--delay", "0", "--loop", "--progress-interval", "0"
    )
    player.wait_for_line(": 2 messages, elapsed")  # step 0 is out; step 1 is a minute away
    player.process.send_signal(signal.SIGINT)
    code = player.wait(timeout=15)
    output = player.output()
    assert code == 0, output
    assert "interrupted: 0 bag(s) played, 2 messages" in output, output


def test_console_script_waits_for_subscribers_and_delivers_everything(tmp_path, ros_context):
    context, executor, nodes, spinner = ros_context
    recorded = write_episode(tmp_path, "ep_a", namespace="/cell0")
    player = BagPlayProcess(
        str(tmp_path),
        "--rate",
        "0",
        "--remap-namespace",
        "/cell0:/cell5",
        "--wait-for-subscribers",
    )
    player.wait_for_line("waiting for subscribers on /cell5/camera/overhead/image_raw")
    listener = rclpy.create_node("bag_play_listener", context=context)
    nodes.append(listener)
    received: dict[str, list[bytes]] = {}
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    for topic, msgtype_class in [
        ("/cell5/camera/overhead/image_raw", Image),
        ("/cell5/policy/step", PolicyStep),
        ("/cell5/episode_info", EpisodeInfo),
    ]:
        received[topic] = []
        listener.create_subscription(msgtype_class, topic, received[topic].append, qos, raw=True)
    executor.add_node(listener)
    spinner.start()
    code = player.wait()
    assert code == 0, player.output()
    assert "no subscriber yet" not in player.output()
    # The player exits only after the acknowledgements; give the callbacks a moment to run.
    deadline = time.monotonic() + 5
    while sum(map(len, received.values())) < len(recorded) and time.monotonic() < deadline:
        time.sleep(0.05)
    for topic, messages in received.items():
        expected = [d for t, _, _, d in recorded if t.replace("/cell0", "/cell5", 1) == topic]
        assert [bytes(d) for d in messages] == expected, topic
