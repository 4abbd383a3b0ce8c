"""`reset_bin` node: the ResetBin action (`reset_bin/reset`) on a sim or serial motor backend.

sim backend: publishes `reset_bin/motor` (BinMotorCommand), reads `reset_bin/state`
(BinMotorState) from the simulated cell. serial backend: talks to a motor controller over a
serial line (see README.md) and publishes what it reads on `reset_bin/state` during resets.
One reset at a time: goals that arrive while one runs are rejected, as are goals outside the
configured bounds (`max_tilt_angle`, `max_hold_time`, `max_timeout`) and, with `interlock`
true, goals while `iiwa/joint_states` (sensor_msgs/JointState, subscribed) does not show the
arm fresh at one of `safe_poses`; a running reset that loses that stops (FAULT) and returns
the bin to level. The logic is in `reset.py` (sequence, goal bounds) and `interlock.py`.
"""

from __future__ import annotations

import sys
import threading

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import declare_config, describe_config
from mtopt_bridge.qos import STATE_QOS
from mtopt_interfaces.action import ResetBin
from mtopt_interfaces.msg import BinMotorCommand, BinMotorState
from mtopt_reset_bin.config import ResetBinConfig
from mtopt_reset_bin.interlock import ArmInterlock
from mtopt_reset_bin.motor import BinMotor, MotorReading, SimBinMotor
from mtopt_reset_bin.reset import GoalRejected, ResetOutcome, ResetSequence, resolve_goal
from mtopt_reset_bin.serial_motor import SerialBinMotor

# State is read best-effort: that matches both reliable and best-effort publishers.


class ResetBinNode(Node):
    """ROS glue around `ResetSequence` and a `BinMotor` backend."""

    def __init__(self, **kwargs):
        super().__init__("reset_bin", **kwargs)
        self.config = declare_config(self, ResetBinConfig)
        cfg = self.config
        self.get_logger().info(f"parameters: {describe_config(cfg)}")
        self._busy = threading.Lock()
        self._state_pub = None
        if cfg.backend == "sim":
            motor_pub = self.create_publisher(BinMotorCommand, "reset_bin/motor", 10)

            def publish(angle: float, velocity: float) -> None:
                msg = BinMotorCommand(angle=angle, max_velocity=velocity)
                msg.header.stamp = self.get_clock().now().to_msg()
                motor_pub.publish(msg)

            self.motor: BinMotor = SimBinMotor(publish, state_timeout=cfg.comm_timeout)
            self.create_subscription(
                BinMotorState,
                "reset_bin/state",
                lambda m: self.motor.on_state(m.angle, m.velocity, m.fault, m.fault_message),
                STATE_QOS,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
        else:
            self.motor = SerialBinMotor(
                cfg.serial_port, cfg.serial_baudrate, cfg.request_timeout, cfg.serial_checksum
            )
            self._state_pub = self.create_publisher(BinMotorState, "reset_bin/state", 10)
        self.interlock: ArmInterlock | None = None
        if cfg.interlock:
            self.interlock = ArmInterlock.from_config(cfg)
            self._warned_names = False
            self.create_subscription(
                JointState,
                "iiwa/joint_states",
                self._on_joint_state,
                STATE_QOS,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
        else:
            self.get_logger().warning(
                "interlock is off: resets do not check where the arm is (bench setups without "
                "an arm only)"
            )
        self._server = ActionServer(
            self,
            ResetBin,
            "reset_bin/reset",
            execute_callback=self._execute,
            goal_callback=self._check_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )

    def _on_joint_state(self, msg: JointState) -> None:
        if self.interlock.on_joint_state(msg.name, msg.position) or self._warned_names:
            return
        if self.interlock.names_missing:
            self._warned_names = True
            self.get_logger().warning(
                f"iiwa/joint_states lacks {self.interlock.names_missing} (got "
                f"{list(msg.name)}); ignoring such messages (see parameter joint_names)"
            )

    def _arm_check(self) -> str:
        """The interlock's objection ("" = the arm is safe or the interlock is off)."""
        return "" if self.interlock is None else self.interlock.check()

    def _check_goal(self, goal) -> GoalResponse:
        try:
            resolve_goal(self.config, goal.tilt_angle, goal.hold_time, goal.timeout)
        except GoalRejected as exc:
            self.get_logger().warning(f"reset: rejecting the goal: {exc}")
            return GoalResponse.REJECT
        if self._busy.locked():
            self.get_logger().warning("reset: rejecting a goal while a reset runs")
            return GoalResponse.REJECT
        unsafe = self._arm_check()
        if unsafe:
            self.get_logger().warning(f"reset: rejecting the goal: {unsafe}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        result = ResetBin.Result()
        if not self._busy.acquire(blocking=False):
            goal_handle.abort()
            result.outcome, result.message = ResetBin.Result.OUTCOME_FAULT, "another reset runs"
            return result
        try:
            request = goal_handle.request
            goal = resolve_goal(
                self.config, request.tilt_angle, request.hold_time, request.timeout
            )
            arm = "interlock off"
            if self.interlock is not None:
                arm = f"arm within {self.interlock.margin():.3f} rad of a safe pose"
            self.get_logger().info(
                f"reset: tilt {goal.tilt_angle:.3f} rad, hold {goal.hold_time:.2f} s ({arm})"
            )

            def feedback(phase: str, reading: MotorReading) -> None:
                msg = ResetBin.Feedback(phase=phase, angle=reading.angle)
                goal_handle.publish_feedback(msg)
                if self._state_pub is not None:
                    state = BinMotorState(
                        angle=reading.angle,
                        velocity=reading.velocity,
                        fault=reading.fault,
                        fault_message=reading.message,
                    )
                    state.header.stamp = self.get_clock().now().to_msg()
                    self._state_pub.publish(state)

            sequence = ResetSequence(self.motor, self.config)
            outcome = sequence.run(
                goal.tilt_angle,
                goal.hold_time,
                goal.timeout,
                feedback=feedback,
                should_cancel=lambda: goal_handle.is_cancel_requested or not self.context.ok(),
                arm_check=self._arm_check,
            )
        finally:
            self._busy.release()
        result.final_angle = outcome.final_angle
        result.message = outcome.message
        if outcome.outcome is ResetOutcome.DONE:
            result.outcome = ResetBin.Result.OUTCOME_DONE
            goal_handle.succeed()
            self.get_logger().info(f"reset: {outcome.message}")
        elif outcome.outcome is ResetOutcome.CANCELED:
            # The action has no CANCELED outcome: the goal status says it; the bin was sent
            # back to level, and the outcome says the reset did not finish.
            result.outcome = ResetBin.Result.OUTCOME_TIMEOUT
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            self.get_logger().info(f"reset: {outcome.message}")
        else:
            result.outcome = int(outcome.outcome)
            goal_handle.abort()
            self.get_logger().error(f"reset: {outcome.outcome.name}: {outcome.message}")
        return result

    def destroy_node(self):
        motor = getattr(self, "motor", None)  # absent if the constructor failed
        if motor is not None:
            motor.close()
        return super().destroy_node()


def main(args=None) -> int:
    """Run the node until interrupted (exit code 2 on invalid parameters)."""
    # The reset goal blocks a thread while motor feedback and joint states keep arriving.
    return run_node(ResetBinNode, "reset_bin", threads=4, args=args)


if __name__ == "__main__":
    sys.exit(main())
