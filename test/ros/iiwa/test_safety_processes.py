"""The safety layer across processes: sim_cell_node and iiwa_controller_node (config/iiwa.yaml
plus the simulation's overrides in config/sim_cell.yaml, as launch/cell.launch.yaml runs them)
over real DDS.

* The simulated cell refuses JointTrajectory messages beyond the iiwa14's joint limits (a
  million radians, a jump at t = 0) with a warning: the arm does not move.
* The controller's own trajectories (checked before publishing, timed within the limits) are
  accepted by the cell and executed.
* Ctrl-C during a move: the controller exits 0 on the first SIGINT, without tracebacks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Duration
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.safety import IIWA14_POSITION_LIMITS
from mtopt_interfaces.action import MoveEndEffector

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
NS = f"/safety{os.getpid()}"
JOINTS = list(IiwaControllerConfig().joint_names)


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read()


def _trajectory(points: list[tuple[float, list[float]]]) -> JointTrajectory:
    msg = JointTrajectory(joint_names=JOINTS)
    for t, positions in points:
        sec = int(t)
        msg.points.append(
            JointTrajectoryPoint(
                positions=[float(p) for p in positions],
                time_from_start=Duration(sec=sec, nanosec=int(round((t - sec) * 1e9))),
            )
        )
    return msg


class _Client:
    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("safety_client", namespace=NS, context=self.context)
        self.q: np.ndarray | None = None
        self.node.create_subscription(JointState, "iiwa/joint_states", self._on_joints, 10)
        self.trajectory = self.node.create_publisher(JointTrajectory, "iiwa/joint_trajectory", 10)
        self.move = ActionClient(self.node, MoveEndEffector, "iiwa/move_ee")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_joints(self, msg: JointState) -> None:
        self.q = np.array(msg.position)

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if condition():
                return True
        return False

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def send_goal(self, xyz, duration: float = 0.0):
        goal = MoveEndEffector.Goal(mode=MoveEndEffector.Goal.MODE_ABSOLUTE, duration=duration)
        goal.translation.x, goal.translation.y, goal.translation.z = (float(v) for v in xyz)
        future = self.move.send_goal_async(goal)
        assert self.spin_until(future.done, 10), "no goal response"
        handle = future.result()
        assert handle.accepted
        return handle

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_sim_refuses_out_of_limit_trajectories_and_the_controller_stops_cleanly():
    sim = _start(
        [
            sys.executable,
            "-m",
            "mtopt_sim.sim_cell_node",
            "--ros-args",
            "-r",
            f"__ns:={NS}",
            "-p",
            "camera_width:=16",
            "-p",
            "camera_height:=16",
            "-p",
            "camera_rate_hz:=1.0",
            "-p",
            "oracle_rate_hz:=0.0",
            "-p",
            f"clock_topic:={NS}/clock",
        ]
    )
    controller = _start(
        [
            str(BIN / "iiwa_controller_node"),
            "--ros-args",
            "-r",
            f"__ns:={NS}",
            "--params-file",
            str(ROOT / "config" / "iiwa.yaml"),
            "--params-file",
            str(ROOT / "config" / "sim_cell.yaml"),
        ]
    )
    client = _Client()
    sim_output = controller_output = ""
    try:
        ready = client.spin_until(
            lambda: (
                client.q is not None
                and ("iiwa_controller", NS) in client.node.get_node_names_and_namespaces()
                and client.move.server_is_ready()
            ),
            timeout=60,
        )
        assert ready, "sim cell or controller did not come up"
        client.spin_for(0.3)
        q0 = client.q.copy()

        # Beyond the position limits (either sign), and a jump of 0.5 rad on A7 at t = 0
        # (infinite velocity; then held for a second): refused, the arm stays where it is.
        jumped = q0 + [0, 0, 0, 0, 0, 0, 0.5]
        for bad in (
            _trajectory([(1.0, q0 + [1e6, 0, 0, 0, 0, 0, 0])]),
            _trajectory([(1.0, q0 - [0, 1e6, 0, 0, 0, 0, 0])]),
            _trajectory([(0.0, jumped), (1.0, jumped)]),
        ):
            client.trajectory.publish(bad)
            client.spin_for(0.6)
            np.testing.assert_allclose(client.q, q0, atol=0.005)
        assert np.all(np.abs(client.q) <= IIWA14_POSITION_LIMITS)

        # The controller's own trajectories pass the cell's check and are executed.
        handle = client.send_goal([0.56, -0.15, 0.25])
        result = handle.get_result_async()
        assert client.spin_until(result.done, 15), "move did not finish"
        outcome = result.result().result
        assert outcome.outcome == MoveEndEffector.Result.OUTCOME_REACHED, outcome.message
        assert np.max(np.abs(client.q - q0)) > 0.1

        # Ctrl-C in the middle of a long move (its result still awaited): the controller exits
        # 0 on the first SIGINT, without tracebacks.
        handle = client.send_goal([0.56, 0.15, 0.25], duration=4.0)
        pending = handle.get_result_async()
        client.spin_for(0.5)
        controller.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        code = controller.wait(timeout=10)
        stopped_in = time.monotonic() - t0
        controller_output = controller.stdout.read()
        assert code == 0, controller_output
        assert stopped_in < 5.0
        assert "Traceback" not in controller_output, controller_output
        assert "Error raised" not in controller_output, controller_output
        assert not pending.done() or pending.result() is not None
    finally:
        client.close()
        if controller.poll() is None:
            controller_output += _stop(controller)
        sim_output = _stop(sim)
    refusals = [line for line in sim_output.splitlines() if "refused (joint limits)" in line]
    assert len(refusals) == 3, sim_output
    assert "joint A1 position" in refusals[0] and "joint A2 position" in refusals[1]
    assert "joint A7 jumps at t=0.000" in refusals[2]
    assert "WARN" in refusals[0]
