"""`iiwa_controller` node: Cartesian moves and gripper commands for one iiwa cell.

Serves
  `iiwa/move_ee` (mtopt_interfaces/action/MoveEndEffector): delta or absolute grasp-point pose
      -> clamp into the cell's free space (bins, transit slab) -> IK along a straight line, or
      up / across / down over the walls -> joint limit check -> `iiwa/joint_trajectory`
      (trajectory_msgs/JointTrajectory, the joint_trajectory_controller topic) -> watches
      `iiwa/joint_states` until REACHED / CLAMPED / BLOCKED / TIMEOUT / FAULT.
  `iiwa/go_home` (std_srvs/Trigger): joint-space move to the `home_q` posture (clear of the
      tilting bin), e.g. before a bin reset; answers when the move ended.
  `iiwa/present` (std_srvs/Trigger): joint-space move to the `present_q` posture (the grading
      pose: gripper close to the right_shoulder camera, bins visible), e.g. before the success
      detector's final images; same semantics as `iiwa/go_home`.
  `gripper/gripper_cmd` (mtopt_interfaces/action/GripperCommand, as ros2_control's
      GripperActionController) -> `gripper/command` -> watches `gripper/state` until the fingers
      reach the target or stall on an object.

A new goal preempts the running one of the same action (its result: FAULT "preempted"). On
cancel, BLOCKED, TIMEOUT and stale joint states the arm is told to hold where it is. Timeouts
use the wall clock, so a stalled simulator cannot hang a goal.

Safety (`mtopt_iiwa.safety`): every trajectory (moves, go_home/present, holds) is checked
against the joint position, velocity and acceleration limits with their margins before it is
published; one beyond them is refused (FAULT naming the joint, value and limit) and nothing is
sent. The node has no trajectory or velocity input of its own (nothing from outside reaches
`iiwa/joint_trajectory` through it), and no streaming command: every motion is a bounded,
checked trajectory that ends at rest, and each goal's timeout is the watchdog (after it the
arm is told to hold). On shutdown (Ctrl-C) running goals end at once without publishing
anything more; a trajectory already sent runs to its end.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Pose
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import declare_config, describe_config
from mtopt_bridge.qos import STATE_QOS
from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.kinematics import rotation_to_quaternion
from mtopt_iiwa.motion import (
    GripperMonitor,
    GripperOutcome,
    MotionPlan,
    MoveMonitor,
    Outcome,
    kinematics_for,
    plan_joint_move,
    plan_move,
    plan_rise,
    plan_setpoint,
    safety_of,
)
from mtopt_iiwa.safety import hold_duration
from mtopt_interfaces.action import GripperCommand as GripperCommandAction
from mtopt_interfaces.action import MoveEndEffector
from mtopt_interfaces.msg import GripperCommand, GripperState

# State topics are read best-effort: that matches both reliable and best-effort publishers.


def _duration_msg(seconds: float) -> Duration:
    sec = int(seconds)
    return Duration(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def _pose_msg(position, rotation) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
    q = rotation_to_quaternion(rotation)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
    return pose


class _Latest:
    """Latest sample of a state topic with its arrival time, and a condition to wait on."""

    def __init__(self):
        self.cond = threading.Condition()
        self.value = None
        self.stamp = None  # time.monotonic() at arrival
        self.seq = 0

    def put(self, value) -> None:
        with self.cond:
            self.value, self.stamp = value, time.monotonic()
            self.seq += 1
            self.cond.notify_all()

    def get(self):
        with self.cond:
            return self.value, self.stamp, self.seq

    def wait_newer(self, seq: int, timeout: float):
        """Wait up to `timeout` for a sample newer than `seq`; return (value, stamp, seq)."""
        with self.cond:
            self.cond.wait_for(lambda: self.seq > seq, timeout=timeout)
            return self.value, self.stamp, self.seq


class _Preemption:
    """One running goal per action: a new goal sets the previous goal's event."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active: threading.Event | None = None
        self.run_lock = threading.Lock()

    def begin(self) -> threading.Event:
        with self._lock:
            if self._active is not None:
                self._active.set()
            self._active = threading.Event()
            return self._active


class IiwaControllerNode(Node):
    """ROS glue around `IiwaKinematics`, `plan_move`, `MoveMonitor` and `GripperMonitor`."""

    def __init__(self, **kwargs):
        super().__init__("iiwa_controller", **kwargs)
        self.config = declare_config(self, IiwaControllerConfig)
        cfg = self.config
        self.kin = kinematics_for(cfg)
        _, self.limits = safety_of(cfg)
        self.get_logger().info(f"parameters: {describe_config(cfg)}")
        # Set by close(): running goals end at once. Goals in progress are counted so close()
        # can wait for them before the executor and the node go away.
        self._closing = threading.Event()
        self._busy = threading.Condition()
        self._running = 0
        self._joints = _Latest()
        self._gripper = _Latest()
        self._move_preemption = _Preemption()
        self._gripper_preemption = _Preemption()
        self._warned_names = False

        state_group = MutuallyExclusiveCallbackGroup()
        action_group = ReentrantCallbackGroup()
        self.create_subscription(
            JointState,
            "iiwa/joint_states",
            self._on_joint_state,
            STATE_QOS,
            callback_group=state_group,
        )
        self.create_subscription(
            GripperState,
            "gripper/state",
            self._on_gripper_state,
            STATE_QOS,
            callback_group=state_group,
        )
        self._trajectory_pub = self.create_publisher(JointTrajectory, "iiwa/joint_trajectory", 10)
        self._gripper_pub = self.create_publisher(GripperCommand, "gripper/command", 10)
        self._move_server = ActionServer(
            self,
            MoveEndEffector,
            "iiwa/move_ee",
            execute_callback=self._execute_move,
            goal_callback=self._check_move_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=action_group,
        )
        self.create_service(
            Trigger,
            "iiwa/go_home",
            lambda _request, response: self._joint_service("go_home", cfg.home_q, response),
            callback_group=action_group,
        )
        self.create_service(
            Trigger,
            "iiwa/present",
            lambda _request, response: self._joint_service("present", cfg.present_q, response),
            callback_group=action_group,
        )
        self._gripper_server = ActionServer(
            self,
            GripperCommandAction,
            "gripper/gripper_cmd",
            execute_callback=self._execute_gripper,
            goal_callback=self._check_gripper_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=action_group,
        )

    # -- state topics --------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        try:
            q = np.array([msg.position[index[n]] for n in self.config.joint_names])
        except (KeyError, IndexError):
            if not self._warned_names:
                self._warned_names = True
                self.get_logger().warning(
                    f"iiwa/joint_states lacks some of {list(self.config.joint_names)} "
                    f"(got {list(msg.name)}); ignoring such messages"
                )
            return
        if np.all(np.isfinite(q)):
            self._joints.put(q)

    def _on_gripper_state(self, msg: GripperState) -> None:
        self._gripper.put(msg)

    def _fresh_joints(self) -> np.ndarray | None:
        """Current joint positions if a state arrived within joint_state_timeout (waits)."""
        timeout = self.config.joint_state_timeout
        q, stamp, seq = self._joints.get()
        if q is not None and time.monotonic() - stamp <= timeout:
            return q
        q, stamp, _ = self._joints.wait_newer(seq, timeout)
        if q is None or time.monotonic() - stamp > timeout:
            return None
        return q

    # -- shutdown ------------------------------------------------------------------------------
    def _live(self) -> bool:
        """Whether the node may still talk: not closing, context not shut down."""
        return not self._closing.is_set() and self.context.ok()

    def _guarded(self, call, *args) -> bool:
        """Run a call that publishes (a message, a goal state, feedback) unless the node is
        shutting down; a shutdown racing it is swallowed. Returns whether it ran."""
        if not self._live():
            return False
        try:
            call(*args)
        except Exception:  # rclpy raises RCLError / RuntimeError on a shut-down context
            if self.context.ok():
                raise
            return False
        return True

    def _finish(self, goal_handle, state: str) -> None:
        """Set a goal's terminal state ('succeed', 'abort', 'canceled'). During shutdown the
        state still changes (so rclpy does not abort it again itself) but nothing is sent."""
        try:
            getattr(goal_handle, state)()
        except Exception:
            if self.context.ok():
                raise

    def _track(self, work, *args):
        """Run a goal's work counted as running (see close())."""
        with self._busy:
            self._running += 1
        try:
            return work(*args)
        finally:
            with self._busy:
                self._running -= 1
                self._busy.notify_all()

    def close(self) -> None:
        """Called by run_node before the executor shuts down: end running goals (they stop
        publishing at once) and wait up to 2 s for them to return."""
        self._closing.set()
        self._joints.put(self._joints.get()[0])  # wake goals waiting for a joint state
        with self._busy:
            self._busy.wait_for(lambda: self._running == 0, timeout=2.0)

    # -- commands ------------------------------------------------------------------------------
    def _publish_plan(self, plan: MotionPlan) -> str | None:
        """Check a plan against the joint limits and publish it; the refusal, or None."""
        refusal = self.limits.violation(
            plan.times[1:], plan.positions[1:], plan.positions[0], plan.velocities[1:]
        )
        if refusal is not None:
            return refusal
        msg = JointTrajectory()
        msg.joint_names = list(self.config.joint_names)
        # A zero header stamp means "start now" to joint_trajectory_controller.
        for t, q, v in zip(plan.times[1:], plan.positions[1:], plan.velocities[1:], strict=True):
            msg.points.append(
                JointTrajectoryPoint(
                    positions=[float(x) for x in q],
                    velocities=[float(x) for x in v],
                    time_from_start=_duration_msg(float(t)),
                )
            )
        self._guarded(self._trajectory_pub.publish, msg)
        return None

    def _publish_hold(self, q, setpoint=None) -> None:
        """Replace the running trajectory with 'stay at q' (stops a blocked or canceled arm).
        q is clipped into the checked position limits, so even an arm pushed past them gets a
        stop it can follow. `setpoint`: where the running trajectory commands the arm now; a
        blocked arm lags it, and the hold is timed so that the way back stays in the limits."""
        if q is None:
            return
        q_hold = self.limits.clamp(q)
        duration, refusal = hold_duration(self.limits, q_hold, setpoint)
        if refusal is not None:
            self.get_logger().error(f"hold refused: {refusal}")
            return
        msg = JointTrajectory()
        msg.joint_names = list(self.config.joint_names)
        msg.points.append(
            JointTrajectoryPoint(
                positions=[float(x) for x in q_hold],
                velocities=[0.0] * 7,
                time_from_start=_duration_msg(duration),
            )
        )
        self._guarded(self._trajectory_pub.publish, msg)

    # -- iiwa/move_ee --------------------------------------------------------------------------
    def _check_move_goal(self, goal) -> GoalResponse:
        t = goal.translation
        values = (t.x, t.y, t.z, goal.yaw, goal.duration, goal.timeout)
        if goal.mode not in (MoveEndEffector.Goal.MODE_DELTA, MoveEndEffector.Goal.MODE_ABSOLUTE):
            self.get_logger().warning(f"move_ee: rejecting unknown mode {goal.mode}")
            return GoalResponse.REJECT
        if not all(np.isfinite(values)):
            self.get_logger().warning(f"move_ee: rejecting non-finite goal {values}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _move_result(self, outcome: Outcome, q, target, message: str):
        result = MoveEndEffector.Result()
        result.outcome = int(outcome)
        result.message = message
        if q is not None:
            pose = self.kin.fk(q)
            result.achieved_pose = _pose_msg(pose.position, pose.rotation)
            if target is not None:
                result.position_error = float(np.linalg.norm(pose.position - target))
        return result

    def _execute_move(self, goal_handle):
        return self._track(self._execute_move_now, goal_handle)

    def _execute_move_now(self, goal_handle):
        preempted = self._move_preemption.begin()
        with self._move_preemption.run_lock:
            if preempted.is_set() or not self._live():
                self._finish(goal_handle, "abort")
                reason = "preempted by a newer goal" if self._live() else "node shutting down"
                return self._move_result(Outcome.FAULT, None, None, reason)
            return self._run_move(goal_handle, preempted)

    def _run_move(self, goal_handle, preempted: threading.Event):
        cfg, req = self.config, goal_handle.request
        q = self._fresh_joints()
        if q is None:
            self._finish(goal_handle, "abort")
            if not self._live():
                return self._move_result(Outcome.FAULT, None, None, "node shutting down")
            msg = f"no joint states on iiwa/joint_states for {cfg.joint_state_timeout} s"
            self.get_logger().error(f"move_ee: {msg}")
            return self._move_result(Outcome.FAULT, None, None, msg)
        translation = (req.translation.x, req.translation.y, req.translation.z)
        try:
            plan = plan_move(self.kin, cfg, q, req.mode, translation, req.yaw, req.duration)
        except ValueError as exc:
            self._finish(goal_handle, "abort")
            return self._move_result(Outcome.FAULT, q, None, f"bad goal: {exc}")

        def feedback(status) -> None:
            msg = MoveEndEffector.Feedback()
            msg.current_pose = _pose_msg(status.position, status.rotation)
            msg.progress = float(status.progress)
            self._guarded(goal_handle.publish_feedback, msg)

        outcome, q_now, message = self._follow(
            "move_ee",
            plan,
            req.timeout if req.timeout > 0 else plan.duration + cfg.timeout_margin,
            preempted,
            lambda: goal_handle.is_cancel_requested,
            feedback,
        )
        if outcome in (Outcome.REACHED, Outcome.CLAMPED):
            self._finish(goal_handle, "succeed")
        elif goal_handle.is_cancel_requested:
            self._finish(goal_handle, "canceled")
        else:
            self._finish(goal_handle, "abort")
        return self._move_result(outcome, q_now, plan.target_position, message)

    def _follow(self, name, plan: MotionPlan, timeout, preempted, cancel_requested, feedback):
        """Publish a plan and watch the joint states until it ends: (outcome, q, message)."""
        cfg = self.config
        if not self._live():
            return Outcome.FAULT, self._joints.get()[0], "node shutting down"
        start = time.monotonic()
        refusal = self._publish_plan(plan)
        if refusal is not None:
            message = f"trajectory refused, nothing sent: {refusal}"
            self.get_logger().error(f"{name}: {message}")
            return Outcome.FAULT, self._joints.get()[0], message
        monitor = MoveMonitor(self.kin, cfg, plan, start, timeout)
        feedback_period = 1.0 / cfg.feedback_rate
        next_feedback = start
        q_now, _, seq = self._joints.get()
        while self._live():
            if cancel_requested():
                q_now = self._joints.get()[0]
                self._publish_hold(q_now, plan_setpoint(plan, time.monotonic() - start))
                return Outcome.FAULT, q_now, "canceled by the client"
            if preempted.is_set():
                return Outcome.FAULT, self._joints.get()[0], "preempted by a newer goal"
            q_now, stamp, new_seq = self._joints.wait_newer(seq, feedback_period)
            now = time.monotonic()
            if now - stamp > cfg.joint_state_timeout:
                self._publish_hold(q_now, plan_setpoint(plan, now - start))
                msg = f"joint states stale for {now - stamp:.2f} s during the move"
                self.get_logger().error(f"{name}: {msg}")
                return Outcome.FAULT, q_now, msg
            if new_seq == seq and now - start <= timeout:
                continue
            seq = new_seq
            status = monitor.update(now, q_now)
            if status.done:
                break
            if feedback is not None and now >= next_feedback:
                next_feedback = now + feedback_period
                feedback(status)
        else:
            return Outcome.FAULT, q_now, "node shutting down"
        if status.outcome not in (Outcome.REACHED, Outcome.CLAMPED):
            self._publish_hold(q_now, plan_setpoint(plan, time.monotonic() - start))
        if not self._live():
            return status.outcome, q_now, status.message
        self.get_logger().info(
            f"{name}: {status.outcome.name} error {status.position_error * 1000:.2f} mm "
            f"in {time.monotonic() - start:.2f} s ({status.message})"
        )
        return status.outcome, q_now, status.message

    # -- iiwa/go_home, iiwa/present -------------------------------------------------------------
    def _joint_service(self, name: str, target_q, response: Trigger.Response) -> Trigger.Response:
        """Joint-space move to `target_q`, rising straight out of the bins first (preempts a
        running move; moves preempt it)."""
        return self._track(self._joint_service_now, name, target_q, response)

    def _joint_service_now(self, name: str, target_q, response: Trigger.Response):
        preempted = self._move_preemption.begin()
        with self._move_preemption.run_lock:
            q = None if preempted.is_set() else self._fresh_joints()
            if q is None:
                response.success = False
                response.message = (
                    "FAULT: preempted by a newer goal"
                    if preempted.is_set()
                    else f"FAULT: no joint states for {self.config.joint_state_timeout} s"
                )
                return response
            outcome, message = Outcome.REACHED, ""
            rise = plan_rise(self.kin, self.config, q)
            if rise is not None:
                outcome, q, message = self._follow(
                    f"{name} (rise)",
                    rise,
                    rise.duration + self.config.timeout_margin,
                    preempted,
                    lambda: False,
                    None,
                )
            if outcome in (Outcome.REACHED, Outcome.CLAMPED):
                plan = plan_joint_move(self.kin, self.config, q, target_q)
                outcome, _, message = self._follow(
                    name,
                    plan,
                    plan.duration + self.config.timeout_margin,
                    preempted,
                    lambda: False,
                    None,
                )
        response.success = outcome in (Outcome.REACHED, Outcome.CLAMPED)
        response.message = f"{outcome.name}: {message}"
        return response

    # -- gripper/gripper_cmd -------------------------------------------------------------------
    def _check_gripper_goal(self, goal) -> GoalResponse:
        values = (goal.command.position, goal.command.max_effort)
        if not all(np.isfinite(values)):
            self.get_logger().warning(f"gripper_cmd: rejecting non-finite goal {values}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    @staticmethod
    def _gripper_result(position, effort, reached: bool, stalled: bool):
        result = GripperCommandAction.Result()
        result.position, result.effort = float(position), float(effort)
        result.reached_goal, result.stalled = reached, stalled
        return result

    def _execute_gripper(self, goal_handle):
        return self._track(self._execute_gripper_now, goal_handle)

    def _execute_gripper_now(self, goal_handle):
        preempted = self._gripper_preemption.begin()
        with self._gripper_preemption.run_lock:
            if preempted.is_set() or not self._live():
                self._finish(goal_handle, "abort")
                return self._gripper_result(0.0, 0.0, False, False)
            return self._run_gripper(goal_handle, preempted)

    def _run_gripper(self, goal_handle, preempted: threading.Event):
        cfg = self.config
        requested = float(goal_handle.request.command.position)
        target = float(np.clip(requested, 0.0, cfg.gripper_max_opening))
        # An unsafe force never reaches the gripper: clamped to the configured limit.
        max_effort = goal_handle.request.command.max_effort
        max_effort = float(np.clip(max_effort, 0.0, cfg.gripper_max_effort))
        _, _, seq = self._gripper.get()
        command = GripperCommand(position=target, max_effort=max_effort)
        start = time.monotonic()
        self._guarded(self._gripper_pub.publish, command)
        monitor = GripperMonitor(cfg, target, start, cfg.gripper_timeout)
        state, position, effort = None, float("nan"), 0.0
        last_state_time = start
        while self._live():
            if goal_handle.is_cancel_requested or preempted.is_set():
                if state is not None and goal_handle.is_cancel_requested:
                    # Stop the fingers where they are.
                    self._guarded(
                        self._gripper_pub.publish,
                        GripperCommand(position=state.position, max_effort=command.max_effort),
                    )
                    self._finish(goal_handle, "canceled")
                else:
                    self._finish(goal_handle, "abort")
                return self._gripper_result(position, effort, False, False)
            state, _, new_seq = self._gripper.wait_newer(seq, 0.05)
            now = time.monotonic()
            if new_seq == seq:
                # Silence is judged from the last state, not the command: a late but live
                # gripper is the monitor's TIMEOUT, checked with every sample.
                if now - last_state_time > cfg.gripper_timeout:
                    self._finish(goal_handle, "abort")
                    self.get_logger().error(
                        f"gripper_cmd: no gripper/state for {cfg.gripper_timeout:.1f} s"
                    )
                    return self._gripper_result(position, effort, False, False)
                continue
            seq, last_state_time = new_seq, now
            position, effort = state.position, state.effort
            status = monitor.update(now, position, effort, state.object_detected)
            feedback = GripperCommandAction.Feedback()
            feedback.position, feedback.effort = float(position), float(effort)
            self._guarded(goal_handle.publish_feedback, feedback)
            if status.done:
                break
        else:
            self._finish(goal_handle, "abort")  # shutting down
            return self._gripper_result(position, effort, False, False)
        reached = status.outcome is GripperOutcome.REACHED
        stalled = status.outcome is GripperOutcome.STALLED
        if reached or stalled:
            self._finish(goal_handle, "succeed")
        else:
            self._finish(goal_handle, "abort")
        clamped = abs(target - requested) > cfg.gripper_tolerance
        note = f"; opening {requested} clamped to {target}" if clamped else ""
        self.get_logger().info(f"gripper_cmd: {status.outcome.value} ({status.message}{note})")
        # The clamped opening was reached, not the requested one.
        return self._gripper_result(position, effort, reached and not clamped, stalled)


def main(args=None) -> int:
    """Run the node until interrupted (exit code 2 on invalid parameters)."""
    # Move, go_home/present and gripper goals block a thread each while they run.
    return run_node(IiwaControllerNode, "iiwa_controller", threads=6, args=args)


if __name__ == "__main__":
    sys.exit(main())
