"""`policy_node`: runs policy episodes on a cell (the ROS face of `mtopt_policy.policy`).

Serves (relative names, so a namespace like /cell0 applies):
  action `policy/run_episode`  mtopt_interfaces/action/RunEpisode: one episode of a task;
                               feedback per step; result with steps, terminated/aborted/reason,
                               the policy that acted and the weights version/sha256.
Subscribes:
  `camera/<policy_camera>/image_raw`  sensor_msgs/Image (best effort: any publisher matches); a
                                      malformed frame (encoding, size, step, data length) is
                                      dropped and counted (`malformed_frames`, a throttled
                                      warning); an episode aborts only when no valid frame is
                                      fresh within `max_staleness_s`.
  `gripper/state`                     mtopt_interfaces/GripperState (closed, height, object)
  `policy/weights`                    mtopt_interfaces/WeightsUpdate (transient_local, depth 1):
                                      verified and loaded at once (`WeightsSlot`: versions
                                      ordered within a run id, files only from `weights_dirs`,
                                      a time limit), installed between episodes; refused
                                      updates are logged with the reason.
Publishes:
  `policy/step`          mtopt_interfaces/PolicyStep, one per step
  `policy/observation`   sensor_msgs/Image, the exact image each step acted on (the
                         `policy_roi` crop of the camera frame, resized to `image_size`)
  `policy/episode_timing` std_msgs/String, JSON: where an episode's time went (diagnostics)
Calls:
  action `iiwa/move_ee` (MoveEndEffector), action `gripper/gripper_cmd` (GripperCommand).

Parameters: `mtopt_policy.config.PolicyConfig` (config/policy.yaml).

Ctrl-C / SIGINT / SIGTERM: run_node's handler (not rclpy's, which would invalidate the
context under a running episode) stops it: a running episode ends at once (aborted, "policy
node shutting down", its result still sent), then the node shuts down and exits 0; nothing is
published after that.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from mtopt_bridge.image import ImageConversionError, image_to_numpy, numpy_to_image
from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import declare_config, describe_config, parameter_error
from mtopt_bridge.qos import SENSOR_QOS, WEIGHTS_QOS
from mtopt_core.images import FULL_FRAME, policy_image, roi_is_square, roi_pixels
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_interfaces.action import GripperCommand, MoveEndEffector, RunEpisode
from mtopt_interfaces.msg import GripperState, PolicyStep, WeightsUpdate
from mtopt_policy.config import PolicyConfig
from mtopt_policy.inputs import LatestInput, wait_fresh
from mtopt_policy.policy import (
    Decision,
    EpisodePlan,
    EpisodeRunner,
    MoveResult,
    Observation,
    PortError,
    WeightsRefused,
    make_planner,
    shown,
)
from mtopt_policy.ros_calls import CallError, run_goal

#: After a stop request, how long the node waits for a running episode to end [s] (it ends
#: within a step's wait; a launch escalates to SIGTERM after 5 s).
EPISODE_STOP_TIMEOUT_S = 2.0
#: After an episode ended by a stop, how long its result gets to reach the client [s].
RESULT_GRACE_S = 0.3
#: Shortest interval between two warnings about malformed camera frames [s].
MALFORMED_LOG_PERIOD_S = 5.0
#: Abort reason of an episode ended by the node's shutdown.
SHUTDOWN_REASON = "policy node shutting down"


def check_frame(msg: Image) -> None:
    """Raise ImageConversionError (a ValueError) unless the frame converts to rgb8: a supported
    colour encoding, pixels, a step that fits the width, data of step x height bytes."""
    image_to_numpy(msg, "rgb8")


def _yaw_of_quaternion(q) -> float:
    """Yaw of a top-down tool pose (R = Rz(yaw) diag(-1, 1, -1)): atan2(-R01, R11)."""
    r01 = 2 * (q.x * q.y - q.z * q.w)
    r11 = 1 - 2 * (q.x * q.x + q.z * q.z)
    return math.atan2(-r01, r11)


def policy_step_msg(
    plan: EpisodePlan, step: int, decision: Decision, obs: Observation
) -> PolicyStep:
    """The `policy/step` record of one step (header stamp left to the caller)."""
    return PolicyStep(
        episode_id=plan.episode_id,
        step=step,
        task=plan.task,
        action=[float(v) for v in decision.action],
        q_value=float(decision.q_value),
        exploratory=bool(decision.exploratory),
        policy_kind=plan.kind,
        gripper_closed=obs.gripper_closed,
        gripper_height=float(obs.height),
        object_detected=bool(obs.object_detected),
    )


class _RosCellPort:
    """`CellPort` over the node's action clients and inputs, for one episode (goal handle)."""

    def __init__(self, node: PolicyNode, goal_handle):
        self.node = node
        self.goal_handle = goal_handle
        self.config = node.config

    def move(self, mode: int, translation: Sequence[float], yaw: float, duration: float):
        cfg = self.config
        goal = MoveEndEffector.Goal(mode=mode, yaw=float(yaw), duration=float(duration))
        goal.translation.x, goal.translation.y, goal.translation.z = (
            float(v) for v in translation
        )
        try:
            outcome = run_goal(
                self.node.move_client,
                goal,
                cfg.server_timeout_s,
                cfg.result_timeout_s + max(0.0, duration),
                "iiwa/move_ee",
                self.node.alive,
            )
        except CallError as exc:
            raise PortError(str(exc)) from None
        result = outcome.result
        p = result.achieved_pose.position
        position = np.array([p.x, p.y, p.z])
        yaw_now = _yaw_of_quaternion(result.achieved_pose.orientation)
        return MoveResult(int(result.outcome), result.message, position, yaw_now)

    def gripper(self, close: bool) -> str:
        cfg = self.config
        goal = GripperCommand.Goal()
        goal.command.position = cfg.gripper_closed_position if close else cfg.gripper_open_position
        goal.command.max_effort = cfg.gripper_max_effort
        try:
            outcome = run_goal(
                self.node.gripper_client,
                goal,
                cfg.server_timeout_s,
                cfg.result_timeout_s,
                "gripper/gripper_cmd",
                self.node.alive,
            )
        except CallError as exc:
            raise PortError(str(exc)) from None
        if outcome.status_name not in ("SUCCEEDED", "ABORTED"):
            verb = "close" if close else "open"
            raise PortError(f"gripper/gripper_cmd: {verb} ended {outcome.status_name}")
        # ABORTED = the fingers did not settle in time (e.g. a wobbling object): the command
        # was executed as far as it goes, the episode goes on (the state topic tells the rest).
        result = outcome.result
        if outcome.succeeded:
            return "STALLED" if result.stalled else "REACHED"
        return "UNSETTLED"

    def wait_first_inputs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for latest in (self.node.camera, self.node.gripper_state):
            while latest.count == 0 and self.node.alive():  # a stop ends the wait at once
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                latest.wait_newer(-math.inf, min(remaining, 0.1))

    def observe(self, after: float) -> Observation:
        node = self.node
        image_msg, gripper = wait_fresh(
            (node.camera, node.gripper_state), after, self.config.max_staleness_s
        )
        try:
            frame = image_to_numpy(image_msg, "rgb8")
        except ImageConversionError as exc:
            raise PortError(f"camera {self.config.policy_camera}: bad image: {exc}") from None
        self.node.check_roi_shape(frame.shape)
        roi = tuple(self.config.policy_roi)
        image = policy_image(frame, self.config.image_size, roi)
        if roi == FULL_FRAME and image.shape == frame.shape and image_msg.encoding == "rgb8":
            acted_on = image_msg  # the camera frame itself
        else:
            acted_on = numpy_to_image(image, "rgb8", header=image_msg.header)
        return Observation(
            image, acted_on, bool(gripper.closed), float(gripper.height),
            bool(gripper.object_detected),
        )  # fmt: skip

    def publish_step(self, plan: EpisodePlan, step: int, decision: Decision, obs: Observation):
        node = self.node
        msg = policy_step_msg(plan, step, decision, obs)
        msg.header.stamp = node.get_clock().now().to_msg()
        feedback = RunEpisode.Feedback(step=step, q_value=float(decision.q_value))
        feedback.action = msg.action
        node.publish(node.observation_pub.publish, obs.image_msg)
        node.publish(node.step_pub.publish, msg)
        node.publish(self.goal_handle.publish_feedback, feedback)

    def cancel_requested(self) -> bool:
        return self.goal_handle.is_cancel_requested or not self.node.alive()


class PolicyNode(Node):
    """ROS glue around `EpisodePlanner`, `EpisodeRunner` and `WeightsSlot`."""

    def __init__(self, **kwargs):
        super().__init__("policy", **kwargs)
        self.config = declare_config(self, PolicyConfig)
        cfg = self.config
        self.get_logger().info(f"parameters: {describe_config(cfg)}")
        torch.set_num_threads(cfg.torch_threads)
        with parameter_error("tasks_file", TaskRegistryError):
            self.registry = load_task_registry(cfg.tasks_file or None)
        self.planner = make_planner(cfg, self.registry)
        self.weights = self.planner.weights
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()  # no episode is being executed or reported
        self._idle.set()
        self._malformed_logged_at = -math.inf
        self._warned_no_step_subscriber = False
        self._checked_frame_shape: tuple[int, ...] | None = None

        inputs = ReentrantCallbackGroup()
        clients = ReentrantCallbackGroup()
        self.camera: LatestInput[Image] = LatestInput(
            f"camera {cfg.policy_camera}", check=check_frame
        )
        self.gripper_state: LatestInput[GripperState] = LatestInput("gripper state")
        self.create_subscription(
            Image,
            f"camera/{cfg.policy_camera}/image_raw",
            self._on_camera,
            SENSOR_QOS,
            callback_group=inputs,
        )
        self.create_subscription(
            GripperState,
            "gripper/state",
            self.gripper_state.put,
            SENSOR_QOS,
            callback_group=inputs,
        )
        self.create_subscription(
            WeightsUpdate,
            "policy/weights",
            self._on_weights,
            WEIGHTS_QOS,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.step_pub = self.create_publisher(PolicyStep, "policy/step", 50)
        self.observation_pub = self.create_publisher(Image, "policy/observation", 10)
        self.timing_pub = self.create_publisher(String, "policy/episode_timing", 10)
        self.move_client = ActionClient(
            self, MoveEndEffector, "iiwa/move_ee", callback_group=clients
        )
        self.gripper_client = ActionClient(
            self, GripperCommand, "gripper/gripper_cmd", callback_group=clients
        )
        self._server = ActionServer(
            self,
            RunEpisode,
            "policy/run_episode",
            execute_callback=self._execute,
            goal_callback=self._check_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        self.get_logger().info(
            f"ready: {len(self.registry)} tasks, policy camera {cfg.policy_camera} at "
            f"{cfg.image_size} px (region of interest {list(cfg.policy_roi)}); no learned "
            "weights yet (scripted/random until policy/weights delivers)"
        )
        if not cfg.weights_dirs:
            self.get_logger().warning(
                "weights_dirs is empty: weights files are loaded from any path a WeightsUpdate "
                "names; list the learner's checkpoint directories (README: Weights trust)"
            )

    def check_roi_shape(self, shape: tuple[int, ...]) -> None:
        """Warn once per frame size when `policy_roi` is not square in pixels: the image then
        keeps only the ROI's centre square (pixels stay square)."""
        if shape == self._checked_frame_shape:
            return
        self._checked_frame_shape = shape
        roi = self.config.policy_roi
        if not roi_is_square(shape, roi):
            left, top, right, bottom = roi_pixels(shape, roi)
            self.get_logger().warning(
                f"policy_roi {list(roi)} is {right - left}x{bottom - top} px of the "
                f"{shape[1]}x{shape[0]} {self.config.policy_camera} frame: only its centre "
                "square reaches the policy"
            )

    def alive(self) -> bool:
        """False once the node is shutting down (episodes end at once)."""
        return self.context.ok() and not self._stop.is_set()

    def close(self) -> None:
        """Stop: a running episode ends at its next wait (its result is still sent)."""
        self._stop.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` s until no episode runs or is being reported; True if so."""
        return self._idle.wait(timeout)

    def publish(self, send, msg) -> None:
        """`send(msg)` (a publisher's publish, a goal's publish_feedback) unless the context is
        already shut down: then it is dropped silently (a race with the shutdown too)."""
        if not self.context.ok():
            return
        try:
            send(msg)
        except Exception:
            if self.context.ok():
                raise

    @property
    def malformed_frames(self) -> int:
        """Camera frames dropped as malformed so far."""
        return self.camera.dropped

    # -- inputs ----------------------------------------------------------------------------
    def _on_camera(self, msg: Image) -> None:
        if self.camera.put(msg):
            return
        now = time.monotonic()
        if now - self._malformed_logged_at >= MALFORMED_LOG_PERIOD_S:
            self._malformed_logged_at = now
            self.get_logger().warning(
                f"camera {self.config.policy_camera}: malformed frame dropped "
                f"({self.camera.dropped} so far): {self.camera.last_drop_reason}"
            )

    # -- weights ---------------------------------------------------------------------------
    def _on_weights(self, msg: WeightsUpdate) -> None:
        what = f"weights version {msg.version} of run {shown(msg.run_id or '-', 40)}"
        try:
            if not Path(msg.path).is_absolute():
                raise WeightsRefused("the path is not absolute")
            loaded = self.weights.offer(
                msg.path, msg.version, msg.sha256, msg.task_names, msg.run_id, announced=True
            )
        except WeightsRefused as exc:
            newest = self.weights.newest()
            kept = "no weights"
            if newest is not None:
                pending = "" if newest is self.weights.current else " (installed next episode)"
                kept = f"version {newest.version}{pending}"
            self.get_logger().error(
                f"{what} ({shown(msg.path)}) refused: {exc.reason}; keeping {kept}"
            )
            return
        self.get_logger().info(
            f"weights version {loaded.version} verified (run {shown(msg.run_id or '-', 40)}, "
            f"sha256 {loaded.sha256[:12]}..., {loaded.path}); installed before the next episode"
        )

    # -- episodes --------------------------------------------------------------------------
    def _wait_for_step_subscriber(self) -> None:
        """Give discovery time to match policy/step to its subscriber (see
        PolicyConfig.step_subscriber_wait_s); warns once when nobody subscribes."""
        deadline = time.monotonic() + self.config.step_subscriber_wait_s
        while self.step_pub.get_subscription_count() < 1:
            if time.monotonic() >= deadline or not self.alive():
                if not self._warned_no_step_subscriber:
                    self._warned_no_step_subscriber = True
                    self.get_logger().warning(
                        "policy/step has no subscriber (no logger?): steps are not recorded"
                    )
                return
            time.sleep(0.02)

    def _check_goal(self, goal) -> GoalResponse:
        if not goal.episode_id or not self.alive():  # a probe (is this server answering?)
            return GoalResponse.REJECT
        if self._busy.locked():
            self.get_logger().warning(
                f"run_episode {goal.episode_id!r} rejected: an episode is running"
            )
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        request = goal_handle.request
        result = RunEpisode.Result(weights_version=-1)
        if not self._busy.acquire(blocking=False):
            result.aborted, result.abort_reason = True, "another episode is running"
            goal_handle.abort()
            return result
        self._idle.clear()
        try:
            try:
                result, finish = self._run(goal_handle, request, result)
            finally:
                # Free before reporting the end: a collector that gets the result sends its
                # next goal at once, and that goal must not find this episode still "running".
                self._busy.release()
            if self.context.ok():
                finish()
        finally:
            self._idle.set()
        return result

    def _run(self, goal_handle, request, result):
        """Run one episode: (result, the call that reports its end to the client)."""
        log = self.get_logger()
        previous = self.weights.current
        try:
            plan = self.planner.plan(
                request.episode_id, request.task, request.max_steps, request.policy_kind
            )
        except ValueError as exc:
            result.aborted, result.abort_reason = True, str(exc)
            log.error(f"episode {request.episode_id!r} not run: {exc}")
            return result, goal_handle.abort
        if self.weights.current is not previous:
            log.info(f"installed weights version {plan.weights_version}")
        self._wait_for_step_subscriber()
        started = time.monotonic()
        outcome = EpisodeRunner(_RosCellPort(self, goal_handle), self.config).run(plan)
        outcome.timing["total"] = time.monotonic() - started
        if outcome.aborted and not self.alive():
            outcome.reason = SHUTDOWN_REASON  # not the client's cancel
        result.steps = outcome.steps
        result.terminated = outcome.terminated
        result.aborted = outcome.aborted
        result.abort_reason = outcome.reason
        result.policy_kind = plan.kind
        result.weights_version = plan.weights_version
        result.weights_sha256 = plan.weights_sha256
        result.epsilon = plan.epsilon
        timing = {"episode_id": plan.episode_id, "kind": plan.kind, "steps": outcome.steps}
        timing.update({k: round(v, 4) for k, v in outcome.timing.items()})
        timing["move_outcomes"] = outcome.move_outcomes
        timing["gripper_outcomes"] = outcome.gripper_outcomes
        self.publish(self.timing_pub.publish, String(data=json.dumps(timing)))
        ending = "terminated" if outcome.terminated else "step limit"
        if outcome.aborted:
            ending = f"ABORTED: {outcome.reason}"
        log.info(
            f"episode {plan.episode_id} {plan.task} ({plan.kind}, weights "
            f"{plan.weights_version}): {outcome.steps} steps, {ending}, "
            f"{outcome.timing['total']:.2f} s"
        )
        if goal_handle.is_cancel_requested:
            return result, goal_handle.canceled
        return result, goal_handle.abort if outcome.aborted else goal_handle.succeed


def _end_episode(node: PolicyNode) -> None:
    """On SIGINT/SIGTERM, while the executor still spins (run_node's `stopping`): end a running
    episode while the context is valid, so its result goes out and nothing is published after
    the shutdown that follows."""
    running = not node.wait_idle(0.0)
    node.close()
    if not node.wait_idle(EPISODE_STOP_TIMEOUT_S):
        node.get_logger().warning(
            f"the running episode did not end within {EPISODE_STOP_TIMEOUT_S} s of the stop"
        )
    elif running:
        # rclpy sends the result just after the execute callback returns; DDS delivers it
        # only while this participant lives.
        time.sleep(RESULT_GRACE_S)


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (exit 0), exit code 2 on invalid parameters."""
    # An episode blocks a thread while images, states and action results keep arriving.
    # run_node's own signal handlers (not rclpy's, which would invalidate the context under a
    # running episode: its publishing and its result would then fail with tracebacks).
    return run_node(PolicyNode, "policy_node", threads=4, args=args, stopping=_end_episode)


if __name__ == "__main__":
    sys.exit(main())
