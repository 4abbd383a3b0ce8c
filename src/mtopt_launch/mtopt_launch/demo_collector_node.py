"""`mtopt-demo-collector`: drives the DEMO cell for `episodes` episodes, then exits 0.

Per episode: picks a task from the registry (seeded), sends a RunEpisode goal to
`policy/run_episode`, counts the feedback and the `policy/step` messages of that episode, waits
for its `episode_info`, and logs what arrived. After the last episode it logs a summary line and
shuts down by itself. Exits 1 when the cell is missing, rejects a goal, or an episode fails.
"""

from __future__ import annotations

import sys
import time

import rclpy
from rclpy.action import ActionClient
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from mtopt_bridge.params import declare_config, describe_config
from mtopt_core.tasks import load_task_registry
from mtopt_interfaces.action import RunEpisode
from mtopt_interfaces.msg import EpisodeInfo, PolicyStep
from mtopt_launch.demo_cell_node import STEP_QOS
from mtopt_launch.demo_logic import (
    CollectionSummary,
    ConfigError,
    DemoCollectorConfig,
    EpisodeTally,
    TaskChooser,
)

# Grace period after discovering the cell's publishers, so both sides have matched before the
# first episode (DDS discovery is symmetric but not simultaneous).
DISCOVERY_SETTLE_S = 0.5
EPISODE_INFO_WAIT_S = 3.0


class CollectionError(RuntimeError):
    """The demo collection could not proceed (message says why)."""


class DemoCollectorNode(Node):
    """Client side of the demo graph. See the module docstring."""

    def __init__(self, node_name: str = "demo_collector"):
        super().__init__(node_name)
        self.config = declare_config(self, DemoCollectorConfig)
        self.registry = load_task_registry(self.config.tasks_file or None)
        self.chooser = TaskChooser(self.registry.names, self.config.seed)
        self.get_logger().info(
            "DEMO collector; effective parameters: " + describe_config(self.config)
        )
        self.client = ActionClient(self, RunEpisode, "policy/run_episode")
        self.current: EpisodeTally | None = None
        self.infos: dict[str, EpisodeInfo] = {}
        self.create_subscription(PolicyStep, "policy/step", self._on_step, STEP_QOS)
        self.create_subscription(EpisodeInfo, "episode_info", self._on_info, STEP_QOS)

    def _on_step(self, msg: PolicyStep) -> None:
        if self.current is not None and msg.episode_id == self.current.episode_id:
            self.current.policy_steps_received += 1

    def _on_info(self, msg: EpisodeInfo) -> None:
        self.infos[msg.episode_id] = msg

    def _on_feedback(self, _feedback) -> None:
        if self.current is not None:
            self.current.feedback_received += 1

    def spin_until(self, predicate, timeout_s: float) -> bool:
        """Spin this node until `predicate()` or the timeout; returns predicate()."""
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.05)
        return predicate()

    def wait_for_cell(self) -> None:
        """Wait for the action server and the cell's topics to be discovered."""
        timeout = self.config.server_timeout_s
        if not self.client.wait_for_server(timeout_sec=timeout):
            raise CollectionError(
                f"no action server on {self.resolve_topic_name('policy/run_episode')} "
                f"after {timeout} s"
            )
        found = self.spin_until(
            lambda: (
                self.count_publishers("policy/step") > 0
                and self.count_publishers("episode_info") > 0
            ),
            timeout,
        )
        if not found:
            raise CollectionError("the cell's policy/step and episode_info publishers not found")
        self.spin_until(lambda: False, DISCOVERY_SETTLE_S)

    def run_episode(self, index: int) -> EpisodeTally:
        """Run one episode through the action and tally what arrived."""
        task = self.chooser.next()
        tally = EpisodeTally(episode_id=f"demo-{index:04d}-{int(time.time() * 1e3)}", task=task)
        self.current = tally
        goal = RunEpisode.Goal(
            episode_id=tally.episode_id, task=task, max_steps=self.config.max_steps
        )
        send = self.client.send_goal_async(goal, feedback_callback=self._on_feedback)
        if not self.spin_until(send.done, self.config.server_timeout_s):
            raise CollectionError(f"episode {tally.episode_id}: goal not acknowledged")
        handle = send.result()
        if not handle.accepted:
            raise CollectionError(f"episode {tally.episode_id}: goal for task {task} rejected")
        result_future = handle.get_result_async()
        if not self.spin_until(result_future.done, self.config.episode_timeout_s):
            raise CollectionError(
                f"episode {tally.episode_id}: no result within {self.config.episode_timeout_s} s"
            )
        result = result_future.result().result
        if result.aborted:
            raise CollectionError(f"episode {tally.episode_id} aborted: {result.abort_reason}")
        tally.result_steps, tally.terminated = result.steps, result.terminated
        # The last PolicySteps and the EpisodeInfo may arrive just after the result.
        self.spin_until(
            lambda: (
                tally.episode_id in self.infos
                and tally.policy_steps_received >= tally.result_steps
            ),
            EPISODE_INFO_WAIT_S,
        )
        info = self.infos.get(tally.episode_id)
        tally.episode_info_cell_id = None if info is None else info.cell_id
        self.current = None
        self.get_logger().info(
            f"episode {tally.episode_id} task={task}: result steps={result.steps} "
            f"terminated={result.terminated} policy={result.policy_kind}; "
            f"feedback received={tally.feedback_received}, "
            f"policy_step received={tally.policy_steps_received}/{result.steps}, "
            f"episode_info={f'cell_id={info.cell_id}' if info else 'MISSING'}"
        )
        return tally

    def collect(self) -> CollectionSummary:
        """Run all episodes; returns the summary."""
        self.wait_for_cell()
        summary = CollectionSummary()
        for index in range(self.config.episodes):
            summary.episodes.append(self.run_episode(index))
        return summary


def main(args: list[str] | None = None) -> int:
    """Entry point of `mtopt-demo-collector`."""
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = DemoCollectorNode()
        summary = node.collect()
        node.get_logger().info(summary.line())
    except ConfigError as exc:
        print(f"[demo_collector] configuration error: {exc}", file=sys.stderr)
        status = 2
    except CollectionError as exc:
        node.get_logger().error(str(exc))
        status = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        # A SIGINT that lands inside rclpy's C++ take surfaces as a pybind11 TypeError caused by
        # the KeyboardInterrupt: it is still the interrupt, not a failure.
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
