"""The arm interlock across processes: reset_bin_node (sim backend, config/reset_bin.yaml,
interlock on as in every cell graph) in its own process; this process plays the cell: the arm's
`iiwa/joint_states` (50 Hz, a settable pose), the bin hinge on `reset_bin/motor` /
`reset_bin/state`, and a ResetBin client."""

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState

from mtopt_interfaces.action import ResetBin
from mtopt_interfaces.msg import BinMotorCommand, BinMotorState
from mtopt_reset_bin.config import ResetBinConfig

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
NS = "/interlock_cell"
HOME = list(ResetBinConfig().safe_poses)  # home_q of config/iiwa.yaml (a unit test checks)
NAMES = list(ResetBinConfig().joint_names)


def off(joint, delta):
    q = list(HOME)
    q[joint] += delta
    return q


class Cell(Node):
    """The arm's joint states and the bin hinge (follows reset_bin/motor at its speed)."""

    def __init__(self, q, **kwargs):
        super().__init__("interlock_cell", namespace=NS, **kwargs)
        self.q = q
        self.angle, self.target, self.speed = 0.0, 0.0, 1.0
        self.commands = []
        self.last_tick = time.monotonic()
        self.joint_pub = self.create_publisher(JointState, "iiwa/joint_states", 10)
        self.bin_pub = self.create_publisher(BinMotorState, "reset_bin/state", 10)
        self.create_subscription(BinMotorCommand, "reset_bin/motor", self._on_command, 10)
        self.create_timer(0.02, self._tick)
        self.client = ActionClient(self, ResetBin, "reset_bin/reset")

    def _on_command(self, msg):
        self.commands.append((msg.angle, msg.max_velocity))
        self.target, self.speed = msg.angle, msg.max_velocity

    def _tick(self):
        now = time.monotonic()
        step = self.speed * min(now - self.last_tick, 0.1)
        self.last_tick = now
        self.angle += max(-step, min(step, self.target - self.angle))
        self.bin_pub.publish(BinMotorState(angle=self.angle))
        self.joint_pub.publish(JointState(name=NAMES, position=[float(v) for v in self.q]))


def _wait(future, timeout):
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {timeout} s")
        time.sleep(0.005)
    return future.result()


class NodeProcess:
    """reset_bin_node as a subprocess; its output lines are collected as they come."""

    def __init__(self, *params):
        args = [str(BIN / "reset_bin_node"), "--ros-args", "-r", f"__ns:={NS}"]
        args += ["--params-file", str(ROOT / "config" / "reset_bin.yaml")]
        for param in params:
            args += ["-p", param]
        # PYTHONFAULTHANDLER: a node that hangs on SIGINT prints every thread's stack on the
        # SIGABRT stop() sends before SIGKILL, into the assertion message.
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )  # fmt: skip
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_line(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.output}"
            time.sleep(0.02)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)
                try:
                    self.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        self.reader.join(timeout=5)
        return self.process.returncode


def test_reset_runs_only_with_the_arm_at_the_safe_pose():
    node = NodeProcess(
        "backend:=sim",
        "tilt_angle:=1.0",
        "hold_time:=0.1",
        "shakes:=0",
        "velocity:=3.0",
        # Both processes can stall for over a second on a loaded 2-core machine; staleness
        # itself is unit-tested (test/unit/reset_bin/test_interlock.py).
        "comm_timeout:=3.0",
        "joint_state_timeout_s:=3.0",
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    cell = Cell(off(1, 0.8), context=context)  # the arm starts off the safe pose
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(cell)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 15
        while not (
            ("reset_bin", NS) in cell.get_node_names_and_namespaces()
            and cell.client.server_is_ready()
        ):
            assert node.process.poll() is None, node.output
            assert time.monotonic() < deadline, f"reset_bin/reset never appeared\n{node.output}"
            time.sleep(0.1)

        def send(goal, feedback=None):
            for _ in range(3):  # a first goal can be lost while discovery settles: resend
                future = cell.client.send_goal_async(goal, feedback_callback=feedback)
                try:
                    return _wait(future, 2)
                except AssertionError:
                    continue
            raise AssertionError(f"no goal response in 3 tries\n{node.output}")

        default_goal = ResetBin.Goal(tilt_angle=0.0, hold_time=-1.0, timeout=0.0)

        # Arm off the safe pose (A2 0.8 rad away): rejected with the reason, the bin stays.
        reason = "arm not at a safe pose: A2 (joint_a2) off by 0.80 rad"
        deadline = time.monotonic() + 5
        while reason not in node.output:  # until the node has the off-pose joint states
            assert not send(default_goal).accepted, node.output
            assert time.monotonic() < deadline, node.output
            time.sleep(0.1)
        time.sleep(0.3)
        assert cell.commands == [] and cell.angle == 0.0

        # At the safe pose (within the tolerance): a goal above the bounds is still rejected...
        cell.q = [q + 0.02 for q in HOME]
        time.sleep(0.2)
        assert not send(ResetBin.Goal(tilt_angle=0.0, hold_time=60.0, timeout=0.0)).accepted
        node.wait_line("rejecting the goal: hold_time 60 s is above max_hold_time 5")
        assert cell.commands == []

        # ... and a default goal runs: tilt, hold, back to level.
        handle = send(default_goal)
        assert handle.accepted, node.output
        response = _wait(handle.get_result_async(), 10)
        assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
        assert response.result.outcome == ResetBin.Result.OUTCOME_DONE
        assert cell.commands == [(1.0, 3.0), (0.0, 3.0)]

        # The arm leaves the safe pose while the bin holds the tilt: FAULT, bin back to level.
        cell.commands.clear()

        def on_feedback(msg):
            if msg.feedback.phase == "hold":
                cell.q = off(3, -0.5)

        handle = send(ResetBin.Goal(tilt_angle=0.0, hold_time=3.0, timeout=0.0), on_feedback)
        assert handle.accepted, node.output
        t0 = time.monotonic()
        response = _wait(handle.get_result_async(), 10)
        result = response.result
        assert response.status == GoalStatus.STATUS_ABORTED
        assert result.outcome == ResetBin.Result.OUTCOME_FAULT
        assert result.message.startswith(
            "interlock stopped the reset during hold: arm not at a safe pose: A4 (joint_a4) "
            "off by 0.50 rad"
        ), result.message
        assert result.message.endswith("the bin returned to level"), result.message
        assert time.monotonic() - t0 < 2.5  # not the 3 s hold
        assert cell.commands == [(1.0, 3.0), (0.0, 3.0)]
        assert abs(cell.angle) < 0.05 and math.isfinite(result.final_angle)
    finally:
        executor.shutdown()
        cell.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5)
        code = node.stop()
    assert code == 0, node.output
    assert "reset: FAULT: interlock stopped the reset during hold" in node.output
