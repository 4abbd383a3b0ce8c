"""The installed console scripts as separate processes: fake_bin_motor_controller on a pty and
reset_bin_node with config/reset_bin.yaml, driven over DDS from this process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor

from mtopt_interfaces.action import ResetBin

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _spin_until(executor, future, timeout):
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {timeout} s")
        executor.spin_once(timeout_sec=0.05)
    return future.result()


def test_console_scripts_reset_and_fault(tmp_path):
    link = tmp_path / "binmotor"
    fake = subprocess.Popen(
        [str(BIN / "fake_bin_motor_controller"), "--link", str(link)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    node = None
    context = rclpy.Context()
    try:
        assert fake.stdout.readline().startswith("PORT /dev/")
        assert os.path.islink(link)
        node = subprocess.Popen(
            [
                str(BIN / "reset_bin_node"),
                "--ros-args",
                "--params-file",
                str(ROOT / "config" / "reset_bin.yaml"),
                "-p",
                "backend:=serial",
                "-p",
                f"serial_port:={link}",
                "-p",
                "hold_time:=0.1",
                "-p",
                "tilt_angle:=1.0",
                # Two Python processes on a shared CI machine can both stall for over the
                # 1 s a real motor controller may go silent; the timeout logic is unit-tested.
                "-p",
                "comm_timeout:=3.0",
                "-p",
                "interlock:=false",  # a bench setup: no arm
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        rclpy.init(context=context)
        client_node = rclpy.create_node("process_test_client", context=context)
        client = ActionClient(client_node, ResetBin, "reset_bin/reset")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(client_node)
        # server_is_ready() alone can be fooled by endpoints of an earlier in-process server
        # of this pytest session: also wait for the node itself, and resend a lost first goal.
        deadline = time.monotonic() + 15
        while not ("reset_bin" in client_node.get_node_names() and client.server_is_ready()):
            assert node.poll() is None, node.stdout.read()
            assert time.monotonic() < deadline, "reset_bin/reset never appeared"
            executor.spin_once(timeout_sec=0.1)

        def reset():
            for _ in range(3):
                future = client.send_goal_async(ResetBin.Goal(hold_time=-1.0))
                try:
                    handle = _spin_until(executor, future, 2)
                    break
                except AssertionError:
                    continue
            else:
                raise AssertionError("no goal response in 3 tries")
            assert handle.accepted
            return _spin_until(executor, handle.get_result_async(), 10)

        response = reset()
        assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
        assert response.result.outcome == ResetBin.Result.OUTCOME_DONE

        fake.stdin.write("fault bin jammed\n")
        fake.stdin.flush()
        assert fake.stdout.readline().strip() == "ACK fault"
        response = reset()
        assert response.result.outcome == ResetBin.Result.OUTCOME_FAULT
        assert "bin jammed" in response.result.message

        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=10) == 0
        output = node.stdout.read()
        assert "parameters: backend='serial'" in output and "bin jammed" in output
        client_node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        for proc in (node, fake):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if fake.stdin:
            fake.stdin.close()


def test_bad_parameter_is_named_and_the_node_exits():
    result = subprocess.run(
        [
            str(BIN / "reset_bin_node"),
            "--ros-args",
            "--params-file",
            str(ROOT / "config" / "reset_bin.yaml"),
            "-p",
            "tilt_angle:=3.5",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "tilt_angle 3.5 is outside" in result.stdout + result.stderr
