"""The installed `iiwa_controller_node` script with config/iiwa.yaml, as a separate process."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor

from mtopt_interfaces.action import GripperCommand, MoveEndEffector

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = str(Path(sys.executable).parent / "iiwa_controller_node")
PARAMS = str(ROOT / "config" / "iiwa.yaml")


def test_node_starts_with_the_config_file_and_stops_on_sigint(tmp_path):
    # config/iiwa.yaml, then a second file that changes one list parameter for this cell.
    override = tmp_path / "cell3.yaml"
    override.write_text(
        "/**/iiwa_controller:\n  ros__parameters:\n    right_bin_high: [0.65, -0.05, 0.35]\n"
    )
    node = subprocess.Popen(
        [
            SCRIPT,
            "--ros-args",
            "-r",
            "__ns:=/cell3",
            "--params-file",
            PARAMS,
            "--params-file",
            str(override),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    try:
        rclpy.init(context=context)
        client_node = rclpy.create_node("iiwa_process_client", context=context)
        move = ActionClient(client_node, MoveEndEffector, "/cell3/iiwa/move_ee")
        grip = ActionClient(client_node, GripperCommand, "/cell3/gripper/gripper_cmd")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(client_node)
        deadline = time.monotonic() + 15
        # The node itself must be in the graph: server_is_ready() alone can be fooled by
        # endpoints of an earlier in-process server of this pytest session.
        while not (
            ("iiwa_controller", "/cell3") in client_node.get_node_names_and_namespaces()
            and move.server_is_ready()
            and grip.server_is_ready()
        ):
            assert node.poll() is None, node.stdout.read()
            assert time.monotonic() < deadline, "the controller's actions never appeared"
            executor.spin_once(timeout_sec=0.1)
        client_node.destroy_node()
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=10) == 0
        output = node.stdout.read()
        # The files' values (lists included) are the effective parameters.
        assert "right_bin_high=(0.65, -0.05, 0.35)" in output
        assert "home_q=(0.0, -0.186, 0.0, -1.856, 0.0, 1.472, 0.0)" in output
        assert "joint_names=('joint_a1'," in output
    finally:
        rclpy.try_shutdown(context=context)
        if node.poll() is None:
            node.kill()
            node.wait()


def test_bad_parameter_is_named_and_the_node_exits():
    result = subprocess.run(
        [SCRIPT, "--ros-args", "--params-file", PARAMS, "-p", "position_tolerance:=-1.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "position_tolerance must be a positive" in result.stdout + result.stderr
