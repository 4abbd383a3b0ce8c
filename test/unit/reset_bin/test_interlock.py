"""The reset bin's safety checks without ROS: goal bounds (`resolve_goal`), the arm interlock's
decision (`ArmInterlock`) and a reset stopped mid-way when the arm leaves the safe pose."""

import math
from pathlib import Path

import pytest
import yaml

from mtopt_reset_bin.config import ResetBinConfig
from mtopt_reset_bin.interlock import ArmInterlock
from mtopt_reset_bin.motor import SimBinMotor
from mtopt_reset_bin.reset import GoalRejected, ResetOutcome, ResetSequence, resolve_goal

CONFIG = Path(__file__).resolve().parents[3] / "config"
CFG = ResetBinConfig(tilt_angle=1.0, hold_time=0.2, velocity=3.0, shakes=0).validate()
HOME = CFG.safe_pose_list()[0]
NAMES = list(CFG.joint_names)


def off(pose, joint, delta):
    q = list(pose)
    q[joint] += delta
    return q


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# -- goal bounds ---------------------------------------------------------------------------------
def test_goal_defaults_follow_the_action_file():
    cfg = ResetBinConfig()
    goal = resolve_goal(cfg, 0.0, -1.0, 0.0)
    assert (goal.tilt_angle, goal.hold_time, goal.timeout) == (2.65, 0.4, 10.0)
    goal = resolve_goal(cfg, -2.0, 0.0, -5.0)  # hold 0 is a real hold time, not the default
    assert (goal.tilt_angle, goal.hold_time, goal.timeout) == (2.65, 0.0, 10.0)
    goal = resolve_goal(cfg, cfg.max_tilt_angle, cfg.max_hold_time, cfg.max_timeout)
    assert goal.hold_time == cfg.max_hold_time  # the bounds themselves are allowed


@pytest.mark.parametrize(
    ("goal", "match"),
    [
        ((2.9, -1.0, 0.0), "tilt_angle 2.9 rad is above max_tilt_angle 2.8"),
        ((0.0, 60.0, 0.0), "hold_time 60 s is above max_hold_time 5"),
        ((0.0, 1e9, 0.0), "hold_time 1e\\+09 s is above max_hold_time 5"),
        ((0.0, -1.0, 600.0), "timeout 600 s is above max_timeout 20"),
        ((math.nan, -1.0, 0.0), "tilt_angle nan is not finite"),
        ((0.0, math.inf, 0.0), "hold_time inf is not finite"),
        ((0.0, -1.0, -math.inf), "timeout -inf is not finite"),
    ],
)
def test_goals_out_of_bounds_are_rejected_with_the_reason(goal, match):
    with pytest.raises(GoalRejected, match=match):
        resolve_goal(ResetBinConfig(), *goal)


def test_tilt_below_min_angle_is_rejected():
    cfg = ResetBinConfig(min_angle=0.5, level_angle=0.5).validate()
    with pytest.raises(GoalRejected, match="below min_angle"):
        resolve_goal(cfg, 0.2, -1.0, 0.0)


# -- interlock decision --------------------------------------------------------------------------
def test_defaults_are_the_arm_controllers_home_pose_and_joint_names():
    iiwa = yaml.safe_load((CONFIG / "iiwa.yaml").read_text())["/**/iiwa_controller"]
    iiwa = iiwa["ros__parameters"]
    cfg = ResetBinConfig()
    assert cfg.interlock is True
    assert cfg.safe_pose_list() == [tuple(iiwa["home_q"])]
    assert list(cfg.joint_names) == iiwa["joint_names"]


def test_fresh_joint_states_at_home_are_accepted():
    clock = Clock()
    interlock = ArmInterlock.from_config(CFG, clock)
    # Other joints (a gripper's) and another order are fine; small errors are within tolerance.
    names = ["finger", *reversed(NAMES)]
    positions = [0.05, *reversed([q + 0.03 for q in HOME])]
    assert interlock.on_joint_state(names, positions)
    clock.now += 0.5
    assert interlock.check() == ""
    assert interlock.margin() == pytest.approx(0.03)


def test_off_pose_is_rejected_naming_the_joint():
    clock = Clock()
    interlock = ArmInterlock.from_config(CFG, clock)
    interlock.on_joint_state(NAMES, off(off(HOME, 1, 0.8), 3, -0.2))
    reason = interlock.check()
    assert reason.startswith("arm not at a safe pose: A2 (joint_a2) off by 0.80 rad"), reason
    assert "tolerance 0.1 rad" in reason
    interlock.on_joint_state(NAMES, off(HOME, 6, CFG.safe_pose_tolerance + 0.01))
    assert "A7 (joint_a7) off by 0.11 rad" in interlock.check()


def test_stale_or_missing_joint_states_are_rejected():
    clock = Clock()
    interlock = ArmInterlock.from_config(CFG, clock)
    assert interlock.check() == "no fresh joint states: none received on iiwa/joint_states"
    interlock.on_joint_state(NAMES, HOME)
    clock.now += CFG.joint_state_timeout_s + 0.3
    reason = interlock.check()
    assert reason.startswith("no fresh joint states: last iiwa/joint_states 1.30 s ago"), reason
    # A message without the arm's joints, or with a NaN, does not count as fresh.
    assert not interlock.on_joint_state(NAMES[:6], HOME[:6])
    assert interlock.names_missing == ["joint_a7"]
    assert not interlock.on_joint_state(NAMES, off(HOME, 0, math.nan))
    assert interlock.check().startswith("no fresh joint states")
    interlock.on_joint_state(NAMES, HOME)
    assert interlock.check() == ""


def test_any_of_several_safe_poses_counts():
    other = (0.5, 0.0, 0.0, -1.5, 0.0, 1.0, 0.0)
    cfg = ResetBinConfig(safe_poses=(*HOME, *other)).validate()
    interlock = ArmInterlock.from_config(cfg, Clock())
    interlock.on_joint_state(NAMES, other)
    assert interlock.check() == ""
    interlock.on_joint_state(NAMES, off(other, 4, 0.3))
    assert "A5 (joint_a5) off by 0.30 rad" in interlock.check()
    assert "nearest safe pose 2" in interlock.check()


# -- a reset while the arm moves -----------------------------------------------------------------
class HingeAndArm:
    """A sim cell's hinge in simulated time (`sleep` advances it and publishes its state) and
    the arm's joint states, published with it; `arm_moves_at` puts the arm off the pose."""

    def __init__(self, arm_moves_at=math.inf):
        self.now = 0.0
        self.angle = self.target = 0.0
        self.speed = 1.0
        self.commands = []
        self.arm_moves_at = arm_moves_at
        self.motor = SimBinMotor(self._on_command, state_timeout=0.3, clock=lambda: self.now)
        self.interlock = ArmInterlock.from_config(CFG, clock=lambda: self.now)
        self.sleep(0.01)

    def _on_command(self, angle, velocity):
        self.commands.append((angle, velocity))
        self.target, self.speed = angle, velocity

    def sleep(self, dt):
        self.now += dt
        step = max(-self.speed * dt, min(self.speed * dt, self.target - self.angle))
        self.angle += step
        self.motor.on_state(self.angle, step / dt, False, "")
        arm = off(HOME, 1, 0.5) if self.now >= self.arm_moves_at else HOME
        self.interlock.on_joint_state(NAMES, arm)

    def run(self, **kwargs):
        sequence = ResetSequence(self.motor, CFG, clock=lambda: self.now, sleep=self.sleep)
        return sequence.run(1.0, 1.0, 10.0, arm_check=self.interlock.check, **kwargs)


def test_arm_at_home_throughout_the_reset_is_done():
    cell = HingeAndArm()
    result = cell.run()
    assert result.outcome is ResetOutcome.DONE, result.message
    assert cell.commands == [(1.0, 3.0), (0.0, 3.0)]


def test_arm_leaving_the_safe_pose_mid_reset_faults_and_returns_the_bin():
    cell = HingeAndArm(arm_moves_at=0.6)  # tilted (1 rad at 3 rad/s) and holding
    feedback = []
    result = cell.run(feedback=lambda phase, r: feedback.append((phase, r.angle)))
    assert result.outcome is ResetOutcome.FAULT
    assert result.message.startswith(
        "interlock stopped the reset during hold: arm not at a safe pose: A2 (joint_a2) off by "
        "0.50 rad"
    ), result.message
    assert result.message.endswith("; the bin returned to level")
    assert cell.commands == [(1.0, 3.0), (0.0, 3.0)]  # stopped holding, sent back at once
    assert abs(cell.angle) <= CFG.angle_tolerance
    assert abs(result.final_angle) <= CFG.angle_tolerance
    assert feedback[-1][0] == "return"
    assert cell.now < 0.6 + 1.0 / 3.0 + 0.2  # no further hold: straight back


def test_arm_never_safe_stops_before_the_bin_moves():
    cell = HingeAndArm(arm_moves_at=0.0)
    result = cell.run()
    assert result.outcome is ResetOutcome.FAULT and "during start" in result.message
    assert cell.commands == [(0.0, 3.0)]  # only "stay level"
    assert cell.angle == 0.0


def test_stale_joint_states_mid_reset_also_stop_it():
    cell = HingeAndArm()
    cell.interlock.state_timeout = 0.2
    stop_at = 0.5

    def sleep(dt, inner=cell.sleep):
        if cell.now < stop_at:
            inner(dt)
        else:  # the arm's states stop arriving; the hinge goes on
            cell.now += dt
            step = max(-cell.speed * dt, min(cell.speed * dt, cell.target - cell.angle))
            cell.angle += step
            cell.motor.on_state(cell.angle, step / dt, False, "")

    cell.sleep = sleep
    result = cell.run()
    assert result.outcome is ResetOutcome.FAULT
    assert "no fresh joint states" in result.message, result.message
    assert abs(cell.angle) <= CFG.angle_tolerance
