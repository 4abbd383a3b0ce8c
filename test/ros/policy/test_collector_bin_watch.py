"""The collector notices the reset bin moving over DDS: a real CollectorNode, a stand-in for
the reset_bin node (its `reset_bin/reset` action and `reset_bin/state` topic) and a foreign
action client, in one process. The loop's use of it is tested in
test/unit/policy/test_collector_integrity.py."""

from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_interfaces.action import ResetBin
from mtopt_interfaces.msg import BinMotorState
from mtopt_policy.collector_node import CollectorNode
from mtopt_policy.ros_calls import run_goal

pytestmark = pytest.mark.ros

NAMESPACE = "/watch_cell"


class ResetBinStandIn(Node):
    """Accepts every reset goal and succeeds after a moment; publishes angles on request."""

    def __init__(self, context):
        super().__init__("reset_bin", namespace=NAMESPACE, context=context)
        self.state = self.create_publisher(BinMotorState, "reset_bin/state", 10)
        ActionServer(
            self, ResetBin, "reset_bin/reset", execute_callback=self._execute,
            callback_group=ReentrantCallbackGroup(),
        )  # fmt: skip

    def _execute(self, goal_handle):
        time.sleep(0.3)
        goal_handle.succeed()
        return ResetBin.Result(outcome=ResetBin.Result.OUTCOME_DONE, message="done")


@pytest.fixture
def cell():
    context = rclpy.Context()
    rclpy.init(context=context)
    stand_in = ResetBinStandIn(context)
    stranger = Node("operator", namespace=NAMESPACE, context=context)
    foreign = ActionClient(stranger, ResetBin, "reset_bin/reset")
    overrides = [Parameter("use_oracle", value=False), Parameter("service_timeout_s", value=5.0)]
    collector = CollectorNode(namespace=NAMESPACE, context=context, parameter_overrides=overrides)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    for node in (stand_in, stranger, collector):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert collector.reset_client.wait_for_server(timeout_sec=20)
        assert foreign.wait_for_server(timeout_sec=20)
        deadline = time.monotonic() + 20
        while stand_in.state.get_subscription_count() < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield collector, stand_in, foreign
    finally:
        collector.stop()
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        for node in (collector, stranger, stand_in):
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _publish_angles(stand_in: ResetBinStandIn, *angles: float) -> None:
    for angle in angles:
        stand_in.state.publish(BinMotorState(angle=angle))
        time.sleep(0.05)
    time.sleep(0.3)  # delivered


def test_the_collector_notices_foreign_bin_motion_but_not_its_own_resets(cell):
    collector, stand_in, foreign = cell
    watch = collector.bin_watch
    _publish_angles(stand_in, 0.0)
    # Its own reset (between episodes, as the loop does it), then an episode: nothing moved.
    collector.reset_bin()
    watch.begin()
    _publish_angles(stand_in, 0.01, 0.0)
    assert watch.end() == ""
    # A reset goal from someone else while an episode runs.
    watch.begin()
    outcome = run_goal(foreign, ResetBin.Goal(), 5.0, 5.0, "foreign reset")
    assert outcome.succeeded
    assert "goal ran that this collector did not send" in watch.end()
    # The bin tilted (e.g. its motor commanded directly).
    watch.begin()
    _publish_angles(stand_in, 0.0, 0.4)
    assert "hinge angle 0.400 rad" in watch.end()
