"""The arm controller node's moves and gripper commands, run against a `SimCell` without ROS.

On a cell, `iiwa_controller_node` plans each Cartesian move (`mtopt_iiwa.motion.plan_move`:
from the *measured* joints, straight lines sampled by IK, clamped into the free space, timed
within the joint limits), sends it as a joint trajectory and watches the joint states until
the move is REACHED, CLAMPED, BLOCKED (stalled short of the target) or TIMEOUT
(`MoveMonitor`); an arm that stopped short is then held where it is instead of pushing on. A
gripper command runs until the fingers reach the target or stall on an object
(`GripperMonitor`); iiwa/present rises straight out of the bin before its joint move.
`SimController` runs those same functions and monitors in simulated time: it advances the
physics one joint-state period at a time and feeds the monitors what the node would receive.
So an in-process episode (the gym env, bulk collection, the evaluator) moves the way an
episode through the ROS graph does; before, a blocked step kept pushing and the gripper
stopped waiting as soon as the fingers slowed, which changed what the first close held.

Its parameters default to a simulated cell's (`mtopt_sim.sim_params`: config/iiwa.yaml with
config/sim_cell.yaml's overrides).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.motion import (
    MODE_ABSOLUTE,
    MODE_DELTA,
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
from mtopt_sim.cell import SimCell
from mtopt_sim.sim_params import SIM_STATE_RATE_HZ, sim_controller_config

__all__ = ["MODE_ABSOLUTE", "MODE_DELTA", "MoveReport", "SimController"]


@dataclass(frozen=True)
class MoveReport:
    """What a move ended with (the fields of a MoveEndEffector result)."""

    outcome: Outcome
    message: str
    position: np.ndarray  # the grasp point at the end [m]
    yaw: float  # the gripper's yaw at the end [rad]
    clamped: bool  # the plan's target was moved (free space, joint limits, reach)


class SimController:
    """`iiwa_controller_node`'s move_ee, present and gripper_cmd on a `SimCell`, blocking."""

    def __init__(
        self,
        cell: SimCell,
        config: IiwaControllerConfig | None = None,
        state_rate_hz: float = SIM_STATE_RATE_HZ,
    ):
        if not state_rate_hz > 0:
            raise ValueError(f"state_rate_hz must be > 0, got {state_rate_hz}")
        self.cell = cell
        self.config = config or sim_controller_config()
        self.kin = kinematics_for(self.config)
        _, self.limits = safety_of(self.config)
        self.period = 1.0 / state_rate_hz

    # -- iiwa/move_ee ----------------------------------------------------------------------------
    def move(self, mode: int, translation, yaw: float, duration: float = 0.0) -> MoveReport:
        """A MoveEndEffector goal: MODE_DELTA adds `translation` [m] and `yaw` [rad] to the
        measured pose, MODE_ABSOLUTE goes to them; `duration` 0 = the controller's timing."""
        q = self.cell.arm_qpos()
        plan = plan_move(self.kin, self.config, q, mode, translation, yaw, duration)
        outcome, message = self._follow(plan)
        position, yaw_now = self.cell.tcp_pose()
        return MoveReport(outcome, message, position, yaw_now, plan.clamped)

    # -- iiwa/present, iiwa/go_home --------------------------------------------------------------
    def joint_move(self, target_q) -> Outcome:
        """A joint-space move (the present or home service): straight up out of a bin first."""
        rise = plan_rise(self.kin, self.config, self.cell.arm_qpos())
        outcome = Outcome.REACHED
        if rise is not None:
            outcome, _ = self._follow(rise)
        if outcome in (Outcome.REACHED, Outcome.CLAMPED):
            plan = plan_joint_move(self.kin, self.config, self.cell.arm_qpos(), target_q)
            outcome, _ = self._follow(plan)
        return outcome

    # -- gripper/gripper_cmd ---------------------------------------------------------------------
    def gripper(self, close: bool, max_effort: float = 0.0) -> GripperOutcome:
        """A GripperCommand goal (the policy node's closed / open positions): command the
        fingers, then wait for REACHED (at the target, nothing between them), STALLED (stopped
        short) or TIMEOUT."""
        cfg, cell = self.config, self.cell
        target = 0.0 if close else cfg.gripper_max_opening
        cell.set_gripper(target, float(np.clip(max_effort, 0.0, cfg.gripper_max_effort)))
        monitor = GripperMonitor(cfg, target, cell.time, cfg.gripper_timeout)
        while True:
            cell.advance(self.period)
            state = cell.gripper_status()
            status = monitor.update(cell.time, state.opening, state.effort, state.object_detected)
            if status.done:
                return status.outcome

    # -- the node's _follow ----------------------------------------------------------------------
    def _follow(self, plan: MotionPlan) -> tuple[Outcome, str]:
        """Send a plan and watch the joint states until it ends; hold an arm that stopped
        short where it is."""
        cell = self.cell
        refusal = self.limits.violation(
            plan.times[1:], plan.positions[1:], plan.positions[0], plan.velocities[1:]
        )
        if refusal is not None:
            return Outcome.FAULT, f"trajectory refused, nothing sent: {refusal}"
        start = cell.time
        cell.set_joint_trajectory(plan.times[1:], plan.positions[1:])
        monitor = MoveMonitor(
            self.kin, self.config, plan, start, plan.duration + self.config.timeout_margin
        )
        while True:
            cell.advance(self.period)
            status = monitor.update(cell.time, cell.arm_qpos())
            if status.done:
                break
        if status.outcome not in (Outcome.REACHED, Outcome.CLAMPED):
            q_hold = self.limits.clamp(cell.arm_qpos())
            hold, refused = hold_duration(
                self.limits, q_hold, plan_setpoint(plan, cell.time - start)
            )
            if refused is None:
                cell.set_joint_trajectory([hold], [q_hold])
        return status.outcome, status.message
