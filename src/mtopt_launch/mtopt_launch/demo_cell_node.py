"""`mtopt-demo-cell`: a DEMO stand-in for a policy on a cell; moves nothing, learns nothing.

Serves `policy/run_episode` (RunEpisode): runs the scripted fake episode of
`demo_logic.scripted_action`, one step per `step_period_s`, publishing each step as
`policy/step` (PolicyStep) and as action feedback, then an `episode_info` (EpisodeInfo) with the
registry's task names and no grading (empty SD probabilities).
"""

from __future__ import annotations

import math
import sys
import threading
import uuid

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_bridge.params import declare_config, describe_config
from mtopt_core.tasks import load_task_registry
from mtopt_interfaces.action import RunEpisode
from mtopt_interfaces.msg import EpisodeInfo, PolicyStep
from mtopt_launch.demo_logic import DEMO_POLICY_KIND, ConfigError, DemoCellConfig, scripted_action

STEP_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
STOP_TIMEOUT_S = 2.0  # on shutdown, how long a running episode gets to abort cleanly


class DemoCellNode(Node):
    """Action server of the demo cell. See the module docstring."""

    def __init__(self, node_name: str = "demo_cell"):
        super().__init__(node_name)
        self.config = declare_config(self, DemoCellConfig)
        self.registry = load_task_registry(self.config.tasks_file or None)
        self.get_logger().info(
            "DEMO cell: scripted fake episodes, no robot, no learning; effective parameters: "
            + describe_config(self.config)
        )
        self._stop = threading.Event()
        self._active_lock = threading.Lock()
        self._active_goals = 0
        self._idle = threading.Condition(self._active_lock)
        self.step_pub = self.create_publisher(PolicyStep, "policy/step", STEP_QOS)
        self.info_pub = self.create_publisher(EpisodeInfo, "episode_info", STEP_QOS)
        self.server = ActionServer(
            self,
            RunEpisode,
            "policy/run_episode",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )

    def _on_goal(self, goal: RunEpisode.Goal) -> GoalResponse:
        if goal.task not in self.registry:
            self.get_logger().error(f"rejecting goal: unknown task {goal.task!r}")
            return GoalResponse.REJECT
        if goal.policy_kind not in ("", DEMO_POLICY_KIND):
            self.get_logger().error(
                f"rejecting goal: the demo cell runs only policy_kind {DEMO_POLICY_KIND!r}, "
                f"got {goal.policy_kind!r}"
            )
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Make running episodes abort, and wait (bounded) until they have returned."""
        self._stop.set()
        with self._idle:
            self._idle.wait_for(lambda: self._active_goals == 0, timeout=timeout_s)

    def _execute(self, goal_handle) -> RunEpisode.Result:
        with self._active_lock:
            self._active_goals += 1
        try:
            return self._run_episode(goal_handle)
        finally:
            with self._idle:
                self._active_goals -= 1
                self._idle.notify_all()

    def _run_episode(self, goal_handle) -> RunEpisode.Result:
        goal = goal_handle.request
        episode_id = goal.episode_id or uuid.uuid4().hex[:12]
        total = goal.max_steps or self.config.default_max_steps
        start = self.get_clock().now()
        self.get_logger().info(f"episode {episode_id}: task {goal.task}, {total} demo steps")
        result = RunEpisode.Result(policy_kind=DEMO_POLICY_KIND, weights_version=-1, epsilon=1.0)
        for step in range(total):
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.aborted, result.abort_reason = True, "canceled"
                return result
            if self._stop.is_set():
                goal_handle.abort()
                result.aborted, result.abort_reason = True, "demo cell shutting down"
                self.get_logger().info(f"episode {episode_id}: aborted, shutting down")
                return result
            action = scripted_action(step, total)
            msg = PolicyStep()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.episode_id, msg.step, msg.task = episode_id, step, goal.task
            msg.action = action.tolist()
            msg.q_value = math.nan  # not from a Q-network
            msg.exploratory = True
            msg.policy_kind = DEMO_POLICY_KIND
            msg.gripper_closed = bool(action[4] >= 0.5)
            self.step_pub.publish(msg)
            goal_handle.publish_feedback(
                RunEpisode.Feedback(step=step, action=msg.action, q_value=math.nan)
            )
            result.steps = step + 1
            self._stop.wait(self.config.step_period_s)
        result.terminated = True
        goal_handle.succeed()
        self._publish_episode_info(episode_id, goal.task, start, result)
        self.get_logger().info(f"episode {episode_id}: done after {result.steps} steps")
        return result

    def _publish_episode_info(self, episode_id, task, start, result) -> None:
        info = EpisodeInfo()
        info.header.stamp = self.get_clock().now().to_msg()
        info.episode_id, info.cell_id, info.task = episode_id, self.config.cell_id, task
        info.start_time = start.to_msg()
        info.policy_kind = result.policy_kind
        info.weights_version, info.epsilon = -1, 1.0
        info.steps, info.terminated, info.aborted = result.steps, result.terminated, False
        info.task_names = list(self.registry.names)  # not graded: sd_probabilities stays empty
        self.info_pub.publish(info)


def main(args: list[str] | None = None) -> int:
    """Entry point of `mtopt-demo-cell`.

    SIGINT raises KeyboardInterrupt here instead of shutting the context down at once (rclpy's
    default), so a running episode can abort and send its result before the node goes away.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    executor = None
    try:
        node = DemoCellNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ConfigError as exc:
        print(f"[demo_cell] configuration error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=STOP_TIMEOUT_S)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
