"""`mtopt-reliability`'s own ROS node (`GraphMonitor`) and the arithmetic of camera message loss.

The monitor is a process of its own (`python -m mtopt_experiments.graph_monitor`, started and
stopped by `GraphMonitor`), a subscriber like any node. It subscribes to every cell's
`camera/<name>/image_raw` twice (`MonitorNode`): with `SENSOR_QOS` (best effort, keep last 5:
what the policy and the logger subscribe with; the simulated cell publishes reliable, so both
kinds connect) and the same with a deep queue, which tells frames lost on the way from frames
overwritten in a short queue. It takes each frame raw (no deserialization: the header stamp is
read from the CDR bytes) and records (stamp, receive time) per stream, and the middleware's own
count of lost samples (the message-lost event). With a learner it also records every
WeightsUpdate on `/policy/weights` (receive time, run id, version).

Loss (`stream_loss`, pure): between two consecutive frames of a stream with stamps a < b,
round((b - a) / period) - 1 frames are missing (the simulated cameras publish every `period`
of sim time, each frame at the first physics step at or after its slot). Not counted as loss:

* a publisher restart: the stamp goes back (a new sim_cell process starts its clock at 0), or
  a gap spans a kill of that sim_cell; counted in `restarts`, with the receive time without
  frames in `restart_outage_s`;
* a simulator respawn (`sim/respawn`): sim time jumps while the new objects settle and nothing
  is published; the sim_cell node logs each one (`mtopt_sim.sim_cell_node.respawn_log_line`,
  read back by `sim_pauses`); a gap that spans one is counted in `pauses`.

Frames missing after a stream's last received frame are not seen. The middleware's count
(`dds_lost`) covers samples the transport lost; frames overwritten in the subscriber's own
queue (a subscriber too slow to take them) show only in the stamps.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mtopt_core.atomic_io import atomic_write_bytes

WEIGHTS_LOG = "weights.jsonl"
FRAMES_FILE = "frames.json"
#: The monitor's two subscriptions per camera (see `MonitorNode`).
QUEUES = ("sensor", "deep")
#: Depth of the deep queue: over a second of frames at the fastest rates seen (about 90 per
#: camera and second when fast mode runs the physics at 4-5x real time).
DEEP_DEPTH = 200
#: Part of a gap's period by which a stamp may miss its slot (frames come at the first physics
#: step at or after it: 2 ms of a 50 ms period).
SLOT_TOLERANCE = 0.25

_PAUSE_LINE = re.compile(
    r"\[(?P<ns>[A-Za-z0-9_]+)/sim_cell\].*?"
    r"sim/respawn: sim time (?P<a>[0-9.]+) -> (?P<b>[0-9.]+) s"
)


@dataclass
class StreamLoss:
    """Loss figures of one camera stream (or a sum of streams)."""

    received: int = 0
    lost: int = 0  # frames missing from the stamp sequence (not at restarts or pauses)
    gaps: int = 0  # gaps with at least one frame missing
    max_gap: int = 0  # most frames missing in one gap
    restarts: int = 0  # publisher restarts (a killed sim_cell): excluded
    restart_outage_s: float = 0.0  # receive time without frames across the restarts
    pauses: int = 0  # gaps spanning a simulator respawn (nothing published): excluded
    dds_lost: int = 0  # samples the middleware reported lost (message-lost event)
    #: Every gap: (kind "lost" | "restart" | "pause", stamp before, stamp after, receive time
    #: before, receive time after, frames missing).
    events: list[tuple[str, float, float, float, float, int]] = field(
        default_factory=list, repr=False
    )

    @property
    def loss_pct(self) -> float | None:
        expected = self.received + self.lost
        return round(100.0 * self.lost / expected, 4) if expected else None

    def add(self, other: StreamLoss) -> None:
        for name in ("received", "lost", "gaps", "restarts", "pauses", "dds_lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_gap = max(self.max_gap, other.max_gap)
        self.restart_outage_s = round(self.restart_outage_s + other.restart_outage_s, 3)

    def to_dict(self) -> dict:
        out = {**asdict(self), "loss_pct": self.loss_pct}
        del out["events"]
        return out


def stream_loss(
    frames: Sequence[tuple[float, float]],
    period_s: float,
    kills: Iterable[float] = (),
    pauses: Iterable[tuple[float, float]] = (),
) -> StreamLoss:
    """Loss of one stream (see the module docstring).

    frames: (stamp [s], receive time [s]) in arrival order; kills: receive-clock times at which
    the publisher was killed; pauses: (from, to) sim-time intervals without publishing.
    """
    if not period_s > 0:
        raise ValueError(f"period_s must be > 0, got {period_s}")
    kills = sorted(kills)
    pauses = list(pauses)
    slack = SLOT_TOLERANCE * period_s
    out = StreamLoss(received=len(frames))
    # One kill is one restart, though two gaps may show it: frames the dying process published
    # still arrive after the kill (a gap spanning it), then the new process's stamps go back.
    counted: set[float] = set()
    for (a, ra), (b, rb) in zip(frames, frames[1:], strict=False):
        missing = round((b - a) / period_s) - 1
        spanned = [k for k in kills if ra <= k < rb]
        if b < a - slack or (missing > 0 and spanned):
            before = [k for k in kills if k < rb]
            kill = spanned[0] if spanned else (before[-1] if before else None)
            if kill is None or kill not in counted:
                out.restarts += 1
            if kill is not None:
                counted.add(kill)
            out.restart_outage_s = round(out.restart_outage_s + (rb - ra), 3)
            out.events.append(("restart", a, b, ra, rb, 0))
            continue
        if missing <= 0:
            continue
        if any(a - slack <= p0 and p1 <= b + slack for p0, p1 in pauses):
            out.pauses += 1
            out.events.append(("pause", a, b, ra, rb, missing))
            continue
        out.lost += missing
        out.gaps += 1
        out.max_gap = max(out.max_gap, missing)
        out.events.append(("lost", a, b, ra, rb, missing))
    return out


def sim_pauses(log_text: str) -> dict[str, list[tuple[float, float]]]:
    """Namespace (e.g. `cell0`) -> the sim-time intervals its sim_cell published nothing in
    (its `sim/respawn` log lines, as mtopt-launch's log shows them)."""
    found: dict[str, list[tuple[float, float]]] = {}
    for line in log_text.splitlines():
        m = _PAUSE_LINE.search(line)
        if m:
            found.setdefault(m.group("ns"), []).append((float(m.group("a")), float(m.group("b"))))
    return found


def cdr_stamp(data: bytes) -> float:
    """The header stamp [s] of a serialized message that starts with a std_msgs/Header (CDR:
    a 4-byte encapsulation header, then int32 sec, uint32 nanosec)."""
    order = "<" if data[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(order + "iI", data, 4)
    return sec + nanosec * 1e-9


class MonitorNode:
    """The monitor's ROS node, in the monitor process (`main`): camera frames and weights.

    Each camera topic is subscribed twice: queue "sensor" with `SENSOR_QOS` as is (keep last 5,
    as the policy and the logger take frames), queue "deep" the same with `deep_depth`. Frames
    missing from the deep queue were lost on the way (publisher, middleware, transport); frames
    missing only from the sensor queue were overwritten in a keep-last queue whose subscriber
    had not taken them yet (what a node that wants only the newest frame accepts).

    Receive times are `time.monotonic() - started`: the campaign's clock (CLOCK_MONOTONIC is
    the same in every process). Each WeightsUpdate is appended to `weights_log` at once (JSON
    lines `[t, run_id, version]`), so the campaign sees it while the run goes on."""

    def __init__(
        self,
        camera_topics: Sequence[str],
        weights_topic: str | None,
        started: float,
        weights_log: Path,
        deep_depth: int = DEEP_DEPTH,
    ):
        self.camera_topics = list(camera_topics)
        self.weights_topic = weights_topic
        self.started = started
        self.depths = {"sensor": 0, "deep": deep_depth}
        self.frames = {q: {t: [] for t in self.camera_topics} for q in QUEUES}
        self.dds_lost = {q: {t: 0 for t in self.camera_topics} for q in QUEUES}
        self._weights_log = weights_log.open("a")

    def run(self, stop: threading.Event) -> None:
        """Join the graph (the environment's ROS_DOMAIN_ID) and spin until `stop` is set."""
        import rclpy
        from rclpy.event_handler import SubscriptionEventCallbacks
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        from mtopt_bridge.qos import SENSOR_QOS, WEIGHTS_QOS
        from mtopt_interfaces.msg import WeightsUpdate

        context = rclpy.Context()
        rclpy.init(context=context, signal_handler_options=rclpy.SignalHandlerOptions.NO)
        node = Node("reliability_monitor", context=context)
        for queue in QUEUES:
            qos = copy.copy(SENSOR_QOS)
            qos.depth = self.depths[queue] or SENSOR_QOS.depth
            for topic in self.camera_topics:
                lost = SubscriptionEventCallbacks(message_lost=self._on_lost(queue, topic))
                node.create_subscription(Image, topic, self._on_frame(queue, topic), qos,
                                         raw=True, event_callbacks=lost)  # fmt: skip
        if self.weights_topic:
            node.create_subscription(WeightsUpdate, self.weights_topic, self._on_weights,
                                     WEIGHTS_QOS)  # fmt: skip
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            while not stop.is_set() and context.ok():
                executor.spin_once(timeout_sec=0.2)
        finally:
            executor.shutdown()
            node.destroy_node()
            context.try_shutdown()
            self._weights_log.close()

    def _on_frame(self, queue: str, topic: str):
        frames, started, clock = self.frames[queue][topic], self.started, time.monotonic

        def record(data: bytes) -> None:
            frames.append((cdr_stamp(data), clock() - started))

        return record

    def _on_lost(self, queue: str, topic: str):
        def record(info) -> None:
            self.dds_lost[queue][topic] = int(info.total_count)

        return record

    def _on_weights(self, msg) -> None:
        line = [round(time.monotonic() - self.started, 3), msg.run_id, int(msg.version)]
        self._weights_log.write(json.dumps(line) + "\n")
        self._weights_log.flush()


class GraphMonitor:
    """The monitor as the campaign sees it: a process of its own (`python -m
    mtopt_experiments.graph_monitor`), so that it takes frames like any node and the campaign's
    own work (scanning /proc, reading bags) does not hold it up.

    Files in `out`: `weights.jsonl` (live), `frames.json` (at the stop), `monitor.log`."""

    def __init__(
        self,
        out: Path,
        camera_topics: Sequence[str],
        weights_topic: str | None,
        started: float,
        deep_depth: int = DEEP_DEPTH,
    ):
        self.out = Path(out)
        self.camera_topics = list(camera_topics)
        self.weights_topic = weights_topic
        self.started = started
        self.deep_depth = deep_depth
        self.frames = {q: {t: [] for t in self.camera_topics} for q in QUEUES}
        self.dds_lost = {q: {t: 0 for t in self.camera_topics} for q in QUEUES}
        self._weights: list[tuple[float, str, int]] = []
        self._weights_read = 0
        self._proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_LOG, FRAMES_FILE):
            (self.out / name).unlink(missing_ok=True)
        (self.out / WEIGHTS_LOG).touch()
        command = [sys.executable, "-m", "mtopt_experiments.graph_monitor", "--out",
                   str(self.out), "--started", repr(self.started), "--deep-depth",
                   str(self.deep_depth)]  # fmt: skip
        if self.weights_topic:
            command += ["--weights-topic", self.weights_topic]
        self._log = (self.out / "monitor.log").open("w")
        self._proc = subprocess.Popen(
            [*command, *self.camera_topics], stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def weights(self) -> list[tuple[float, str, int]]:
        """(receive time, run id, version) of every WeightsUpdate so far."""
        try:
            with (self.out / WEIGHTS_LOG).open("rb") as f:
                f.seek(self._weights_read)
                data = f.read()
        except OSError:
            return list(self._weights)
        complete = data[: data.rfind(b"\n") + 1]
        self._weights_read += len(complete)
        for line in complete.splitlines():
            t, run_id, version = json.loads(line)
            self._weights.append((float(t), str(run_id), int(version)))
        return list(self._weights)

    def stop(self) -> None:
        """End the monitor process (SIGINT) and load what it recorded."""
        if self._proc is None:
            return
        self.weights  # noqa: B018 (reads the last announcements)
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        try:
            data = json.loads((self.out / FRAMES_FILE).read_text())
        except (OSError, ValueError):
            return  # nothing recorded: every figure stays 0 (monitor.log says why)
        for queue in QUEUES:
            for topic in self.camera_topics:
                frames = data["frames"][queue].get(topic, [])
                self.frames[queue][topic] = [(float(a), float(b)) for a, b in frames]
                self.dds_lost[queue][topic] = int(data["dds_lost"][queue].get(topic, 0))

    def loss(
        self,
        period_s: float,
        kills: dict[str, list[float]] | None = None,
        pauses: dict[str, list[tuple[float, float]]] | None = None,
    ) -> dict[str, dict[str, StreamLoss]]:
        """Queue -> camera topic -> loss; `kills` and `pauses` are keyed by namespace."""
        out: dict[str, dict[str, StreamLoss]] = {}
        for queue in QUEUES:
            out[queue] = {}
            for topic in self.camera_topics:
                ns = topic.strip("/").split("/", 1)[0]
                ns_kills, ns_pauses = (kills or {}).get(ns, ()), (pauses or {}).get(ns, ())
                loss = stream_loss(self.frames[queue][topic], period_s, ns_kills, ns_pauses)
                loss.dds_lost = self.dds_lost[queue][topic]
                out[queue][topic] = loss
        return out


def main(argv: list[str] | None = None) -> int:
    """The monitor process: record until SIGINT/SIGTERM, then write `frames.json`."""
    p = argparse.ArgumentParser(prog="python -m mtopt_experiments.graph_monitor")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--started", type=float, required=True, help="time.monotonic() of t = 0")
    p.add_argument("--weights-topic", default=None)
    p.add_argument("--deep-depth", type=int, default=DEEP_DEPTH, help="the deep queue's depth")
    p.add_argument("topics", nargs="*", help="camera image topics")
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = MonitorNode(
        args.topics, args.weights_topic, args.started, args.out / WEIGHTS_LOG, args.deep_depth
    )
    node.run(stop)
    data = {"frames": node.frames, "dds_lost": node.dds_lost}
    atomic_write_bytes(args.out / FRAMES_FILE, json.dumps(data).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
