"""policy_node as its own process against a stand-in cell in the test process (camera, gripper
state, instant arm and gripper action servers; no simulator), for the safety issues an outside
client found:

* weights: a hostile WeightsUpdate (the learner's run id, a huge version, a valid file) is
  refused and does not pin the cell: the learner's next update is loaded and acts; a file
  outside `weights_dirs` is refused;
* a malformed camera frame is dropped and counted, the episode goes on with the valid frames;
* SIGINT mid-episode: the node exits 0 at once, without a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import Image

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_bridge.image import numpy_to_image
from mtopt_bridge.qos import IMAGE_PUBLISH_QOS, WEIGHTS_QOS
from mtopt_interfaces.action import GripperCommand, MoveEndEffector, RunEpisode
from mtopt_interfaces.msg import GripperState, PolicyStep, WeightsUpdate
from mtopt_policy.ros_calls import wait_future

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
NS = "/cell7"
RUN_ID = "0123456789abcdef0123456789abcdef"
HUGE = 2**63 - 1


class StandInCell:
    """Camera and gripper state at 50 Hz (with `valid_every` > 0 only every valid_every-th
    frame is valid, the others are malformed), arm and gripper action servers that succeed at
    once, a RunEpisode client, a weights publisher."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        node = self.node = rclpy.create_node("stand_in_cell", namespace=NS, context=self.context)
        group = ReentrantCallbackGroup()
        self.camera_pub = node.create_publisher(
            Image, "camera/overhead/image_raw", IMAGE_PUBLISH_QOS
        )
        self.state_pub = node.create_publisher(GripperState, "gripper/state", IMAGE_PUBLISH_QOS)
        self.weights_pub = node.create_publisher(WeightsUpdate, "policy/weights", WEIGHTS_QOS)
        self.steps: list[PolicyStep] = []
        node.create_subscription(PolicyStep, "policy/step", self.steps.append, 50)
        ActionServer(node, MoveEndEffector, "iiwa/move_ee", self._move, callback_group=group)
        ActionServer(node, GripperCommand, "gripper/gripper_cmd", self._grip, callback_group=group)
        self.episodes = ActionClient(node, RunEpisode, "policy/run_episode", callback_group=group)
        self.closed = False
        self.valid_every = 0
        self.sent_malformed = 0
        self.frame = numpy_to_image(np.full((32, 32, 3), 90, np.uint8), "rgb8")
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.executor.add_node(node)
        self._stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.executor.spin, daemon=True),
            threading.Thread(target=self._stream, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _stream(self) -> None:
        count = 0
        while not self._stop.wait(0.02):
            count += 1
            frame = self.frame
            if self.valid_every and count % self.valid_every:
                frame = Image(height=32, width=32, encoding="rgb8", step=96, data=b"\0" * 50)
                self.sent_malformed += 1
            try:
                self.camera_pub.publish(frame)
                self.state_pub.publish(GripperState(closed=self.closed, height=0.15))
            except Exception:  # the context went down under us: the test is closing
                return

    def _move(self, goal_handle):
        goal_handle.succeed()
        result = MoveEndEffector.Result(outcome=0, message="ok")
        result.achieved_pose.position.x, result.achieved_pose.position.z = 0.56, 0.2
        result.achieved_pose.orientation.x = 1.0  # top-down, yaw 0
        return result

    def _grip(self, goal_handle):
        self.closed = goal_handle.request.command.position < 0.05
        goal_handle.succeed()
        return GripperCommand.Result(reached_goal=True)

    def publish_weights(self, path: Path, version: int, sha: str, names, run_id=RUN_ID) -> None:
        msg = WeightsUpdate(
            path=str(path), run_id=run_id, version=version, sha256=sha, task_names=list(names)
        )
        self.weights_pub.publish(msg)

    def wait_policy(self, timeout: float = 30.0) -> None:
        """Until a probe goal (empty episode_id, rejected at once) is answered: the first
        requests of a new client may precede its discovery by the server."""
        assert self.episodes.wait_for_server(timeout_sec=timeout), "no policy/run_episode"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                wait_future(self.episodes.send_goal_async(RunEpisode.Goal()), 1.0)
                return
            except TimeoutError:
                continue
        raise AssertionError("probe goals of policy/run_episode never answered")

    def start_episode(self, episode_id: str, kind: str = "", max_steps: int = 0):
        goal = RunEpisode.Goal(
            episode_id=episode_id, task="lift-any", policy_kind=kind, max_steps=max_steps
        )
        handle = wait_future(self.episodes.send_goal_async(goal), 10.0)
        assert handle.accepted, episode_id
        return handle

    def run_episode(self, episode_id: str, kind: str = "", timeout: float = 60.0):
        handle = self.start_episode(episode_id, kind)
        return wait_future(handle.get_result_async(), timeout).result

    def close(self) -> None:
        self._stop.set()
        self.threads[1].join(timeout=2.0)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class PolicyProcess:
    def __init__(self, log_path: Path, weights_dir: Path):
        args = [
            str(BIN / "policy_node"), "--ros-args", "-r", f"__ns:={NS}", "-r", "__node:=policy",
            "--params-file", str(ROOT / "config" / "policy.yaml"),
            "-p", "seed:=3", "-p", "max_steps:=4", "-p", "step_subscriber_wait_s:=0.0",
            "-p", "cem_population:=8", "-p", "cem_elites:=2", "-p", "cem_iterations:=1",
            "-p", "random_terminate_prob:=0.0",
            "-p", f"weights_dirs:=['{weights_dir}']",
        ]  # fmt: skip
        self.log_path = log_path
        env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(ROOT / "config" / "fastdds.xml"))
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            assert self.process.poll() is None, f"policy_node exited\n{log[-3000:]}"
            time.sleep(0.05)
        raise AssertionError(f"policy_node never logged {text!r} x{count}\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("policy_safety")
    weights_dir = tmp / "weights"
    weights_dir.mkdir()
    cell = StandInCell()
    policy = PolicyProcess(tmp / "policy.log", weights_dir)
    try:
        policy.wait_log("ready:", timeout=60)
        cell.wait_policy()
        yield cell, policy, weights_dir, tmp
    finally:
        policy.stop()
        cell.close()


def test_a_hostile_huge_version_does_not_pin_the_cell(setup, checkpoints, registry):
    cell, policy, weights_dir, tmp = setup
    names = registry.names
    first = weights_dir / "qnet_10.ckpt"
    cell.publish_weights(first, 10, checkpoints.good(first, names, 10), names)
    policy.wait_log("weights version 10 verified", 20)
    # A client replays a valid checkpoint of the run under the learner's run id with the
    # largest version: refused, so it cannot block the learner's later updates.
    hostile = weights_dir / "qnet_12.ckpt"
    sha12 = checkpoints.good(hostile, names, 12, seed=1)
    cell.publish_weights(hostile, HUGE, sha12, names)
    policy.wait_log(f"weights version {HUGE} ", 20)
    # A file outside weights_dirs: refused before it is opened.
    outside = tmp / "elsewhere.ckpt"
    cell.publish_weights(outside, 11, checkpoints.good(outside, names, 11, seed=2), names)
    log = policy.wait_log("outside weights_dirs", 20)
    assert "max_version_jump" in log
    cell.publish_weights(hostile, 12, sha12, names)  # the learner's next checkpoint
    policy.wait_log("weights version 12 verified", 20)
    result = cell.run_episode("hostile-then-learner", kind="cem")
    assert not result.aborted, result.abort_reason
    assert (result.weights_version, result.weights_sha256) == (12, sha12)


def test_malformed_frames_are_dropped_and_the_episode_goes_on(setup):
    cell, policy, _, _ = setup
    cell.valid_every = 3  # two malformed frames, then a valid one, ...
    try:
        result = cell.run_episode("malformed-frames", kind="random")
    finally:
        cell.valid_every = 0
    assert cell.sent_malformed > 0
    assert not result.aborted, result.abort_reason
    assert result.steps >= 1
    policy.wait_log("malformed frame dropped", 10)


@pytest.mark.exclusive  # a wall-clock bound: a loaded machine took 4.3 s (CI, 2 workers)
def test_sigint_mid_episode_exits_at_once_without_a_traceback(setup):
    cell, policy, _, _ = setup
    cell.frame = numpy_to_image(np.full((32, 32, 3), 90, np.uint8), "rgb8")
    handle = cell.start_episode("interrupted", kind="random", max_steps=500)
    result = handle.get_result_async()  # asked before the stop: answered when the episode ends
    deadline = time.monotonic() + 20
    while not any(s.episode_id == "interrupted" and s.step >= 2 for s in list(cell.steps)):
        assert time.monotonic() < deadline, policy.log()[-3000:]
        time.sleep(0.02)
    start = time.monotonic()
    os.killpg(policy.process.pid, signal.SIGINT)
    code = policy.process.wait(timeout=10)
    log = policy.log()
    assert code == 0, log[-3000:]
    assert time.monotonic() - start < 3.0
    assert "Traceback" not in log and "Failed to publish" not in log, log[-3000:]
    # the episode ended first, and its client was told
    assert wait_future(result, 5.0).result.abort_reason == "policy node shutting down"
