"""Goals the cell's nodes give up on: a server that accepts a goal after the client stopped
waiting must not run it (over DDS, one process: a real ActionServer and ActionClient)."""

from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_interfaces.action import ResetBin
from mtopt_policy.ros_calls import CallError, run_goal

pytestmark = pytest.mark.ros

ACCEPT_DELAY_S = 1.0


class SlowToAcceptServer(Node):
    """Accepts each goal only after ACCEPT_DELAY_S; runs it until cancelled (or 5 s)."""

    def __init__(self, context):
        super().__init__("slow_server", context=context)
        self.outcomes: list[str] = []
        ActionServer(
            self, ResetBin, "slow/reset", execute_callback=self._execute,
            goal_callback=self._goal, cancel_callback=lambda _h: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )  # fmt: skip

    def _goal(self, _request):
        time.sleep(ACCEPT_DELAY_S)
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                self.outcomes.append("canceled")
                return ResetBin.Result(outcome=ResetBin.Result.OUTCOME_FAULT, message="canceled")
            time.sleep(0.02)
        goal_handle.succeed()
        self.outcomes.append("succeeded")
        return ResetBin.Result(outcome=ResetBin.Result.OUTCOME_DONE, message="done")


def test_a_goal_accepted_after_the_client_gave_up_is_cancelled():
    context = rclpy.Context()
    rclpy.init(context=context)
    server = SlowToAcceptServer(context)
    client_node = Node("impatient", context=context)
    client = ActionClient(client_node, ResetBin, "slow/reset")
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    for node in (server, client_node):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert client.wait_for_server(timeout_sec=20)
        with pytest.raises(CallError, match="goal not answered within 0.3 s"):
            run_goal(client, ResetBin.Goal(), 0.3, 10.0, "slow/reset")
        deadline = time.monotonic() + 10.0
        while not server.outcomes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.outcomes == ["canceled"]
    finally:
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        for node in (client_node, server):
            node.destroy_node()
        rclpy.try_shutdown(context=context)
