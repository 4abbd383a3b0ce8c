"""mtopt_bridge.node_main.run_node: exit codes around shutdown."""

import pytest
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from mtopt_bridge.node_main import run_node

pytestmark = pytest.mark.ros


class _ClosingNode(Node):
    closed = 0

    def __init__(self):
        super().__init__("run_node_probe")

    def close(self):
        type(self).closed += 1


def test_sigint_landing_while_the_wait_set_is_built_exits_cleanly(monkeypatch):
    # The launch-shutdown race seen in CI: the signal handler shuts the context down after the
    # executor's ok() check, and building the wait set then fails on the dead context.
    def spin_into_the_race(self):
        rclpy.shutdown()
        raise RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(SingleThreadedExecutor, "spin", spin_into_the_race)
    _ClosingNode.closed = 0
    assert run_node(_ClosingNode, "probe") == 0
    assert _ClosingNode.closed == 1  # close() still ran
    assert not rclpy.ok()


def test_a_runtime_error_on_a_live_context_is_not_swallowed(monkeypatch):
    def fail(self):
        raise RuntimeError("a real bug in a callback")

    monkeypatch.setattr(SingleThreadedExecutor, "spin", fail)
    with pytest.raises(RuntimeError, match="real bug"):
        run_node(_ClosingNode, "probe")
    assert not rclpy.ok()  # shut down all the same


def test_a_main_loop_gives_the_exit_code_and_close_still_runs():
    def loop(node, executor):
        assert node in executor.get_nodes()  # built and added before the loop runs
        return 3

    _ClosingNode.closed = 0
    assert run_node(_ClosingNode, "probe", main_loop=loop) == 3
    assert _ClosingNode.closed == 1
    assert not rclpy.ok()


def test_ctrl_c_in_a_main_loop_without_ros_signal_handlers_is_a_clean_exit():
    def interrupted(node, executor):
        raise KeyboardInterrupt  # what Python's own SIGINT handler raises

    _ClosingNode.closed = 0
    assert run_node(_ClosingNode, "probe", main_loop=interrupted, ros_signal_handlers=False) == 0
    assert _ClosingNode.closed == 1
    assert not rclpy.ok()
