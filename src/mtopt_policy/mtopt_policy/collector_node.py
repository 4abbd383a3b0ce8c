"""`collector_node`: the data-collection loop of one cell (ROS face of `mtopt_policy.collector`).

Per episode: `logger/start` -> `policy/run_episode` -> `iiwa/present` (the grading pose, when
`present_before_grading`; a failure is a warning) -> the newest frame of each camera after
that -> `sd/grade` (when enabled and available; otherwise the episode is logged ungraded, with
empty SD arrays, and a warning says so) -> the newest `sim/oracle` (simulation) ->
`logger/finish` with the complete EpisodeInfo. Bin resets (`iiwa/go_home`, then
`reset_bin/reset`) every `reset_every` episodes and when the right bin is empty; while a reset
fails, collection pauses and `collector/status` says why. With `episodes: N` the node exits 0
after N logged episodes (mark it `on_exit: shutdown` in a launch file).

Episode integrity: the collector records as its fully qualified node name (`requester` of
`logger/start`, which the logger writes into EpisodeInfo.closed_by) and finishes (or discards)
a recording only with the token `logger/start` returned (`mtopt_policy.collector.
LoggerClient`). From the logger start to the end of grading it watches the reset bin
(`mtopt_policy.collector.BinWatch`): when the hinge angle moves by more than
`BIN_MOTION_TOLERANCE_RAD` or a `reset_bin/reset` goal runs that this collector did not send,
the episode is logged as aborted ("bin moved during the episode: ...").

Subscribes: `camera/<name>/image_raw` x3, `gripper/state`, `sim/oracle` (SimOracle, or the
EpisodeInfo form older simulators publish; the type is looked up on the graph),
`reset_bin/state` (BinMotorState) and `reset_bin/reset/_action/status` (the reset action's
goal statuses).
Publishes: `collector/status` (CollectorStatus, transient_local, periodic and on change),
`collector/episode_timing` (std_msgs/String JSON: where each episode's time went).
Calls: services `logger/start`, `logger/finish`, `sd/grade`, `iiwa/go_home`, `iiwa/present`,
`sim/respawn`; actions `policy/run_episode`, `reset_bin/reset`. Every call has a timeout and
retries.

Parameters: `mtopt_policy.config.CollectorConfig` (config/collector.yaml).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time

import numpy as np
from action_msgs.msg import GoalStatus, GoalStatusArray
from builtin_interfaces.msg import Time
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import ConfigError, declare_config, describe_config, parameter_error
from mtopt_bridge.qos import STATE_QOS, STATUS_QOS
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_interfaces.action import ResetBin, RunEpisode
from mtopt_interfaces.msg import (
    BinMotorState,
    CollectorStatus,
    EpisodeInfo,
    GripperState,
    SimOracle,
)
from mtopt_interfaces.srv import FinishEpisode, GradeEpisode, StartEpisode
from mtopt_policy.collector import (
    BinWatch,
    CollectorError,
    CollectorLoop,
    EpisodeRejected,
    EpisodeResult,
    EpisodeSummary,
    Grade,
    LoggerClient,
    LoggerReply,
    LostReply,
    OracleReading,
    StatusSnapshot,
    align_to_registry,
)
from mtopt_policy.config import CollectorConfig
from mtopt_policy.inputs import LatestInput
from mtopt_policy.ros_calls import (
    CallError,
    CallRejected,
    GoalRun,
    call_service,
    sleep_while,
    wait_future,
)

GRADE_FIELDS = ("overhead", "left_shoulder", "right_shoulder")  # GradeEpisode request order
ORACLE_TYPES = ("mtopt_interfaces/msg/SimOracle", "mtopt_interfaces/msg/EpisodeInfo")
OUTCOME_NAMES = ("OK", "ALREADY_RECORDING", "NOT_RECORDING", "BAD_REQUEST", "WRITE_FAILED",
                 "LOW_DISK")  # fmt: skip
ACTIVE_GOAL_STATUSES = (
    GoalStatus.STATUS_ACCEPTED,
    GoalStatus.STATUS_EXECUTING,
    GoalStatus.STATUS_CANCELING,
)
#: An action's status topic: reliable, transient local, depth 1 (rcl_action's default), so the
#: newest statuses arrive also when they were published before this node subscribed.
ACTION_STATUS_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def _stamp(t: float) -> Time:
    sec = int(math.floor(t))
    return Time(sec=sec, nanosec=min(999_999_999, int(round((t - sec) * 1e9))))


def episode_info_msg(summary: EpisodeSummary) -> EpisodeInfo:
    """The EpisodeInfo record of an episode."""
    r = summary.result
    info = EpisodeInfo(
        episode_id=summary.episode_id,
        cell_id=summary.cell_id,
        task=summary.task,
        policy_kind=r.policy_kind,
        weights_version=int(r.weights_version),
        weights_sha256=r.weights_sha256,
        epsilon=float(r.epsilon),
        steps=int(r.steps),
        terminated=bool(r.terminated),
        aborted=bool(r.aborted),
        abort_reason=r.reason,
        task_names=list(summary.task_names),
    )
    info.header.stamp = _stamp(summary.end_time)
    info.start_time = _stamp(summary.start_time)
    if summary.grade is not None:
        info.sd_probabilities = [float(p) for p in summary.grade.probabilities]
        info.sd_model_version = summary.grade.model_version
    if summary.oracle is not None:
        info.has_oracle = True
        info.oracle_success = [bool(s) for s in summary.oracle.success]
    return info


def _outcome_name(response_type, code: int) -> str:
    for name in OUTCOME_NAMES:
        if getattr(response_type, name, None) == code:
            return name
    return str(code)


class RosLoggerLink:
    """`mtopt_policy.collector.LoggerLink` over the logger's services."""

    def __init__(self, node: CollectorNode):
        self.node = node

    def start(self, episode_id: str, task: str, requester: str) -> LoggerReply:
        node = self.node
        request = StartEpisode.Request(
            episode_id=episode_id, cell_id=node.config.cell_id, task=task, requester=requester
        )
        r = node.call(node.start_client, request, node.config.service_timeout_s, "logger/start")
        return LoggerReply(
            _outcome_name(StartEpisode.Response, r.outcome), r.message, r.recording_episode_id,
            r.token, r.bag_path,
        )  # fmt: skip

    def finish(
        self, summary: EpisodeSummary | None, episode_id: str, token: str, discard: bool
    ) -> LoggerReply:
        node = self.node
        info = episode_info_msg(summary) if summary is not None else EpisodeInfo()
        info.episode_id = episode_id
        request = FinishEpisode.Request(info=info, discard=discard, token=token)
        what = "logger/finish (discard)" if discard else "logger/finish"
        try:
            r = call_service(
                node.finish_client, request, node.config.service_timeout_s, 0, what, node.ok
            )
        except CallError as exc:
            raise LostReply(str(exc)) from None
        return LoggerReply(
            _outcome_name(FinishEpisode.Response, r.outcome), r.message, bag_path=r.bag_path
        )


class CollectorNode(Node):
    """ROS side of the collector: inputs, clients, status; implements `CollectorPort`."""

    def __init__(self, **kwargs):
        super().__init__("collector", **kwargs)
        self.config = declare_config(self, CollectorConfig)
        cfg = self.config
        self.get_logger().info(f"parameters: {describe_config(cfg)}")
        with parameter_error("tasks_file", TaskRegistryError):
            self.registry = load_task_registry(cfg.tasks_file or None)
        self.names = tuple(self.registry.names)
        self._stop = threading.Event()
        group = ReentrantCallbackGroup()

        self.cameras: dict[str, LatestInput[Image]] = {}
        for field_name, camera in zip(GRADE_FIELDS, cfg.camera_names, strict=True):
            latest: LatestInput[Image] = LatestInput(f"camera {camera}")
            self.cameras[field_name] = latest
            self.create_subscription(
                Image,
                f"camera/{camera}/image_raw",
                latest.put,
                qos_profile_sensor_data,
                callback_group=group,
            )
        self.gripper: LatestInput[GripperState] = LatestInput("gripper state")
        self.create_subscription(
            GripperState, "gripper/state", self.gripper.put, qos_profile_sensor_data,
            callback_group=group,
        )  # fmt: skip
        self.oracle_input: LatestInput[OracleReading] = LatestInput("sim/oracle")
        self._oracle_type: str | None = None
        if cfg.use_oracle:
            self._oracle_timer = self.create_timer(1.0, self._find_oracle, callback_group=group)

        self.start_client = self.create_client(StartEpisode, "logger/start", callback_group=group)
        self.finish_client = self.create_client(
            FinishEpisode, "logger/finish", callback_group=group
        )
        self.grade_client = self.create_client(GradeEpisode, "sd/grade", callback_group=group)
        self.home_client = self.create_client(Trigger, "iiwa/go_home", callback_group=group)
        self.present_client = self.create_client(Trigger, "iiwa/present", callback_group=group)
        self.respawn_client = self.create_client(Trigger, "sim/respawn", callback_group=group)
        self.run_client = ActionClient(
            self, RunEpisode, "policy/run_episode", callback_group=group
        )
        # Whether policy/run_episode has answered a goal since it was (re)discovered: a server
        # can be "ready" before its goal replies reach this node (discovery is asymmetric), and a
        # goal whose reply is lost still runs, unseen, so goals wait for a probe to be answered.
        self._run_answered = False
        self.reset_client = ActionClient(self, ResetBin, "reset_bin/reset", callback_group=group)
        # Foreign bin motion during an episode: the hinge angle and the reset action's goals.
        self.bin_watch = BinWatch()
        self.create_subscription(
            BinMotorState, "reset_bin/state", lambda m: self.bin_watch.on_angle(m.angle),
            STATE_QOS, callback_group=group,
        )  # fmt: skip
        self.create_subscription(
            GoalStatusArray, "reset_bin/reset/_action/status", self._on_reset_statuses,
            ACTION_STATUS_QOS, callback_group=group,
        )  # fmt: skip
        self.logger_client = LoggerClient(
            RosLoggerLink(self), self.get_fully_qualified_name(), cfg.call_retries + 1, self.log
        )
        self.status_pub = self.create_publisher(CollectorStatus, "collector/status", STATUS_QOS)
        self.timing_pub = self.create_publisher(String, "collector/episode_timing", 20)

        seed = cfg.seed if cfg.seed >= 0 else int(np.random.SeedSequence().entropy % (2**31))
        try:
            self.loop = CollectorLoop(
                cfg, self.registry, self, np.random.default_rng(seed), bin_watch=self.bin_watch
            )
        except ValueError as exc:  # task weights, skills or held_task against the registry
            raise ConfigError(str(exc)) from None
        self.create_timer(cfg.status_period_s, self._publish_periodic, callback_group=group)
        self.get_logger().info(
            f"cell {cfg.cell_id}: collecting "
            + (f"{cfg.episodes} episodes" if cfg.episodes else "until stopped")
            + f" over {len(self.names)} tasks (grade={cfg.grade}, reset_every={cfg.reset_every})"
        )

    # -- oracle (type looked up on the graph) ------------------------------------------------
    def _find_oracle(self) -> None:
        if self._oracle_type is not None:
            return
        name = self.resolve_topic_name("sim/oracle")
        types = dict(self.get_topic_names_and_types()).get(name, [])
        known = [t for t in ORACLE_TYPES if t in types]
        if not known:
            return
        self._oracle_type = known[0]
        if known[0].endswith("SimOracle"):
            self.create_subscription(SimOracle, "sim/oracle", self._on_sim_oracle, 10)
        else:
            self.create_subscription(EpisodeInfo, "sim/oracle", self._on_info_oracle, 10)
            self.get_logger().warning(
                "sim/oracle is EpisodeInfo (no object counts): 'right bin empty' resets need "
                "the SimOracle form"
            )
        self.get_logger().info(f"oracle: subscribed to {name} ({known[0]})")

    def _put_oracle(self, names, success, right_bin: int | None) -> None:
        try:
            aligned = align_to_registry(list(names), list(success), self.names)
        except ValueError as exc:
            self.get_logger().warning(f"sim/oracle ignored: {exc}", throttle_duration_sec=30.0)
            return
        self.oracle_input.put(OracleReading([bool(s) for s in aligned], right_bin))

    def _on_sim_oracle(self, msg: SimOracle) -> None:
        self._put_oracle(msg.task_names, msg.success, int(msg.objects_in_right_bin))

    def _on_info_oracle(self, msg: EpisodeInfo) -> None:
        if msg.has_oracle:
            self._put_oracle(msg.task_names, msg.oracle_success, None)

    def _on_reset_statuses(self, msg: GoalStatusArray) -> None:
        self.bin_watch.on_active_goals(
            bytes(s.goal_info.goal_id.uuid)
            for s in msg.status_list
            if s.status in ACTIVE_GOAL_STATUSES
        )

    # -- status ------------------------------------------------------------------------------
    def _status_msg(self, snap: StatusSnapshot) -> CollectorStatus:
        msg = CollectorStatus(
            cell_id=snap.cell_id,
            episodes_total=snap.episodes_total,
            episodes_aborted=snap.episodes_aborted,
            paused=snap.paused,
            status=snap.status,
            task_names=snap.task_names,
            episodes=snap.episodes,
            successes=snap.successes,
            success_rate=[float(r) for r in snap.success_rate],
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _publish_periodic(self) -> None:
        self.publish_status(self.loop.snapshot())

    # -- CollectorPort -----------------------------------------------------------------------
    def ok(self) -> bool:
        return self.context.ok() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def log(self, level: str, message: str) -> None:
        # One call site per severity: rclpy refuses to change a call site's severity.
        logger = self.get_logger()
        if level == "error":
            logger.error(message)
        elif level == "warn":
            logger.warning(message)
        else:
            logger.info(message)

    def sleep(self, seconds: float) -> bool:
        return sleep_while(self.ok, seconds)

    def publish_status(self, snapshot: StatusSnapshot) -> None:
        if self.context.ok():
            self.status_pub.publish(self._status_msg(snapshot))

    def publish_timing(self, timing: dict) -> None:
        if self.context.ok():
            self.timing_pub.publish(String(data=json.dumps(timing)))

    def missing_inputs(self) -> list[str]:
        cfg = self.config
        missing = []
        now = time.monotonic()
        for latest in (*self.cameras.values(), self.gripper):
            age = latest.age(now)
            if age is None:
                missing.append(f"{latest.name}: nothing received yet")
            elif age > cfg.input_timeout_s:
                missing.append(f"{latest.name} silent for {age:.1f} s")
        if not self.run_client.server_is_ready():
            self._run_answered = False
            missing.append("policy/run_episode not available")
        elif not self._run_answered and not self._probe_run_episode():
            missing.append("policy/run_episode does not answer goals yet")
        if not self.start_client.service_is_ready():
            missing.append("logger/start not available")
        return missing

    def _probe_run_episode(self) -> bool:
        """Send a probe goal (empty episode_id: the policy rejects it, nothing runs); True
        once its reply arrived."""
        try:
            wait_future(
                self.run_client.send_goal_async(RunEpisode.Goal(episode_id="")),
                self.config.probe_timeout_s,
                self.ok,
            )
        except (TimeoutError, CallError):
            return False
        self._run_answered = True
        return True

    def call(self, client, request, timeout_s: float, what: str):
        """A service call with `call_retries` retries; CollectorError when it fails."""
        try:
            return call_service(
                client, request, timeout_s, self.config.call_retries, what, self.ok
            )
        except CallError as exc:
            raise CollectorError(str(exc)) from None

    def start_logging(self, episode_id: str, task: str) -> None:
        self.logger_client.start(episode_id, task)

    def finish_logging(self, summary: EpisodeSummary) -> str:
        return self.logger_client.finish(summary)

    def run_episode(self, episode_id: str, task: str) -> EpisodeResult:
        cfg = self.config
        goal = RunEpisode.Goal(
            episode_id=episode_id, task=task, max_steps=cfg.max_steps, policy_kind=cfg.policy_kind
        )
        try:
            run = GoalRun(self.run_client, "policy/run_episode", self.ok)
            run.send(goal, cfg.service_timeout_s)
        except CallRejected as exc:
            raise EpisodeRejected(str(exc)) from None
        except CallError as exc:
            self._run_answered = False  # probe again before the next goal
            raise CollectorError(str(exc)) from None
        try:
            outcome = run.result(cfg.episode_timeout_s, silence_s=cfg.episode_silence_s)
        except CallError as exc:
            raise CollectorError(str(exc)) from None
        r = outcome.result
        return EpisodeResult(
            steps=r.steps,
            terminated=r.terminated,
            aborted=r.aborted,
            reason=r.abort_reason,
            policy_kind=r.policy_kind,
            weights_version=r.weights_version,
            weights_sha256=r.weights_sha256,
            epsilon=r.epsilon,
        )

    def final_images(self, after: float):
        deadline = time.monotonic() + self.config.final_image_timeout_s
        images = {}
        for field_name, latest in self.cameras.items():
            got = latest.wait_newer(after, deadline - time.monotonic())
            if got is None:
                return None, (
                    f"no final image from {latest.name} within "
                    f"{self.config.final_image_timeout_s:g} s"
                )
            images[field_name] = got[0]
        return images, ""

    def sd_available(self) -> bool:
        return self.grade_client.service_is_ready()

    def grade(self, images) -> Grade:
        request = GradeEpisode.Request(**images)
        response = self.call(self.grade_client, request, self.config.grade_timeout_s, "sd/grade")
        if not response.ok:
            raise CollectorError(f"sd/grade refused: {response.error}")
        try:
            probabilities = align_to_registry(
                list(response.task_names), list(response.probabilities), self.names
            )
        except ValueError as exc:
            raise CollectorError(f"sd/grade answered other tasks: {exc}") from None
        return Grade([float(p) for p in probabilities], response.model_version)

    def oracle(self, after: float) -> OracleReading | None:
        if self._oracle_type is None:
            return None
        got = self.oracle_input.wait_newer(after, self.config.oracle_timeout_s)
        return got[0] if got is not None else None

    def gripper_holding(self) -> bool | None:
        msg, _ = self.gripper.latest()
        age = self.gripper.age()
        if msg is None or age is None or age > self.config.input_timeout_s:
            return None
        return bool(msg.object_detected)

    def go_home(self) -> None:
        response = self.call(
            self.home_client, Trigger.Request(), self.config.home_timeout_s, "iiwa/go_home"
        )
        if not response.success:
            raise CollectorError(f"iiwa/go_home failed: {response.message}")

    def present(self) -> None:
        response = self.call(
            self.present_client, Trigger.Request(), self.config.present_timeout_s, "iiwa/present"
        )
        if not response.success:
            raise CollectorError(f"iiwa/present failed: {response.message}")

    def reset_bin(self) -> None:
        cfg = self.config
        goal = ResetBin.Goal(tilt_angle=0.0, hold_time=-1.0, timeout=0.0)  # node defaults
        try:
            run = GoalRun(self.reset_client, "reset_bin/reset", self.ok)
            run.send(goal, cfg.service_timeout_s)
            self.bin_watch.own_goal(bytes(run.handle.goal_id.uuid))
            outcome = run.result(cfg.reset_timeout_s)
        except CallError as exc:
            raise CollectorError(str(exc)) from None
        result = outcome.result
        if result.outcome != ResetBin.Result.OUTCOME_DONE or not outcome.succeeded:
            name = {1: "TIMEOUT", 2: "FAULT"}.get(result.outcome, str(result.outcome))
            raise CollectorError(f"reset_bin/reset {name}: {result.message}")

    def respawn(self) -> bool:
        if not self.respawn_client.service_is_ready():
            return False
        response = self.call(
            self.respawn_client, Trigger.Request(), self.config.service_timeout_s, "sim/respawn"
        )
        return bool(response.success)

    def finish(self, timeout_s: float = 2.0) -> None:
        """Publish the final status and give subscribers a moment to receive it."""
        self.publish_status(self.loop.snapshot())
        self.status_pub.wait_for_all_acked(Duration(seconds=timeout_s))


def _spin(executor) -> None:
    with contextlib.suppress(ExternalShutdownException):  # SIGINT: the main thread ends too
        executor.spin()


def _collect(node: CollectorNode, executor) -> int:
    """The collection loop, in the main thread; the executor spins in another. It only
    delivers messages and completes futures, none of its callbacks block: one thread is
    enough (and cheapest)."""
    spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
    spinner.start()
    try:
        if node.loop.run():
            node.finish()
            node.get_logger().info(f"{node.loop.status}; exiting")
    finally:
        node.stop()
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
    return 0


def main(args=None) -> int:
    """Collect until `episodes` are logged (exit 0) or interrupted; 2 on invalid parameters."""
    return run_node(CollectorNode, "collector_node", args=args, main_loop=_collect)


if __name__ == "__main__":
    sys.exit(main())
