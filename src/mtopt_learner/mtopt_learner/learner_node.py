"""`learner_node`: the online learner (`mtopt_learner.learner.Learner`) as a ROS node.

A worker thread runs the Learner: it ingests new episode bags from `bag_dir`, trains, and
writes a checkpoint every `checkpoint_every` steps. Each checkpoint is announced on

  `policy/weights`  mtopt_interfaces/WeightsUpdate with `mtopt_bridge.qos.WEIGHTS_QOS`
                    (reliable + transient_local, depth 1, as the policy subscribes): a policy
                    node that starts later still receives the newest. Relative name: at
                    the top level it is `/policy/weights`, which the cells' policies
                    subscribe to when launched with `weights_topic:=/policy/weights`
                    (launch/sim_learning.launch.yaml does).

Every WeightsUpdate carries the run's `run_id` (`mtopt_learner.checkpoints.run_identity`): a
new run picks a random one and stores it in `out_dir/checkpoints/run_id`; policies order
versions (training steps) only within a run id. A restarted node resumes from `out_dir`
(latest checkpoint + LogReplay ledger), keeps the stored run id (its versions go on under it)
and announces the resumed checkpoint once. A status line is logged every `status_every_s`.
With `max_steps` > 0 the node exits 0 once the run reaches that many steps (mark it
`on_exit: shutdown` in a launch file); SIGINT writes a checkpoint of the current step first.
With `wait_for_data` false (a finished bag directory, launch/offline_learning.launch.yaml) it
exits 2 when the bags give fewer than `min_episodes` usable episodes, with `mtopt-learn`'s
message. Exit codes: 0 (done or stopped), 1 (training failed, e.g. a non-finite loss), 2 (bad
parameters, a run directory that cannot be resumed, or no usable data).

Parameters: `mtopt_learner.config.LearnerConfig` (config/learner.yaml).
"""

from __future__ import annotations

import sys
import threading

from rclpy.node import Node

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import ConfigError, declare_config, describe_config
from mtopt_bridge.qos import WEIGHTS_QOS
from mtopt_core.checkpoint import CheckpointError
from mtopt_core.tasks import TaskRegistryError
from mtopt_interfaces.msg import WeightsUpdate
from mtopt_learner.checkpoints import run_identity
from mtopt_learner.config import LearnerConfig, LearnerConfigError
from mtopt_learner.errors import LearnError
from mtopt_learner.learner import Learner, WeightsPublished

WEIGHTS_TOPIC = "policy/weights"
#: How long close() waits for the training thread to finish its current step [s].
STOP_TIMEOUT_S = 30.0


class LearnerNode(Node):
    """ROS glue: parameters -> Learner, a training thread, WeightsUpdate publishing."""

    def __init__(self, **kwargs):
        super().__init__("learner", **kwargs)
        try:
            self.config = declare_config(self, LearnerConfig)
        except LearnerConfigError as exc:
            raise ConfigError(f"parameter {exc.field} {exc.problem}") from None
        log = self.get_logger()
        log.info(f"parameters: {describe_config(self.config)}")
        try:
            self.learner = Learner(self.config, log=log)
            resumed = self.learner.resumed_from is not None
            #: Identity of this learner run, sent in every WeightsUpdate (kept on resume).
            self.run_id, kept = run_identity(self.learner.out_dir, resumed)
        except (LearnError, CheckpointError, TaskRegistryError, OSError) as exc:
            raise ConfigError(
                f"cannot start the run in out_dir {self.config.out_dir}: {exc}"
            ) from None
        self.weights_pub = self.create_publisher(WeightsUpdate, WEIGHTS_TOPIC, WEIGHTS_QOS)
        #: Process exit status when training ends by itself: 1 failed, 2 unusable data.
        self.exit_code = 0
        self._stop = threading.Event()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="learner", daemon=True)
        how = "kept from the resumed run" if kept else "new"
        if resumed and not kept:
            how = "new: the resumed run directory had none"
        log.info(
            f"watching {self.learner.bag_dir} for episode bags; run directory "
            f"{self.learner.out_dir} (run id {self.run_id}, {how}); weights on "
            f"{self.weights_pub.topic_name}"
        )
        self._worker.start()

    def _work(self) -> None:
        log = self.get_logger()
        try:
            self.learner.run(self._stop, self.publish, log.info)
        except LearnError as exc:  # e.g. wait_for_data false and no usable episode
            self.exit_code = 2
            log.error(str(exc))
        except Exception as exc:  # report, and end the process with status 1
            self.exit_code = 1
            log.error(f"training stopped: {type(exc).__name__}: {exc}")
        else:
            if self._stop.is_set():
                return
            log.info(f"done: {self.learner.status()}")
        # Done (max_steps) or failed: end the process (run_node returns once spinning stops).
        self.context.try_shutdown()

    def publish(self, event: WeightsPublished) -> None:
        """Announce a checkpoint as a WeightsUpdate."""
        msg = WeightsUpdate(
            path=event.path,
            run_id=self.run_id,
            version=event.version,
            sha256=event.sha256,
            model_preset=event.model_preset,
            task_names=list(event.task_names),
        )
        seconds = int(event.written_unix_time)
        msg.header.stamp.sec = seconds
        msg.header.stamp.nanosec = int((event.written_unix_time - seconds) * 1e9)
        try:
            self.weights_pub.publish(msg)
        except Exception as exc:  # e.g. the context is already shut down
            self.get_logger().warning(f"weights version {event.version} not announced: {exc}")
            return
        self.get_logger().info(
            f"weights version {event.version} published: {event.path} (sha256 "
            f"{event.sha256[:12]}...)"
        )

    def close(self) -> None:
        """Stop the training thread, checkpoint the current step, close the writers."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._worker.join(timeout=STOP_TIMEOUT_S)
        if self._worker.is_alive():
            self.get_logger().error("training thread did not stop; no final checkpoint")
            return
        event = self.learner.close()
        if event is not None:
            self.get_logger().info(f"stopped: wrote {event.path} at step {event.version}")
            if self.context.ok():
                self.publish(event)


def main(args=None) -> int:
    """Run the node; 0 when done or stopped, 1 when training failed, 2 on bad parameters or
    (with `wait_for_data` false) too few usable episodes."""
    nodes: list[LearnerNode] = []

    def make() -> LearnerNode:
        nodes.append(LearnerNode())
        return nodes[-1]

    code = run_node(make, "learner_node", args=args)
    if code == 0 and nodes:
        return nodes[0].exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
