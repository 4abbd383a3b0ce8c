"""The arm controller's moves and gripper goals in simulated time (`mtopt_sim.controller`), and
the simulated cell's parameters of the in-process paths (`mtopt_sim.sim_params`) against
config/sim_cell.yaml, which the ROS nodes of a simulated cell load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtopt_iiwa.motion import GripperOutcome, Outcome
from mtopt_sim.controller import MODE_ABSOLUTE, MODE_DELTA, SimController
from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.sim_params import (
    SIM_COLLECTOR,
    SIM_CONTROLLER,
    SIM_POLICY,
    SIM_STATE_RATE_HZ,
    sim_controller_config,
    sim_policy_config,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"


def _block(node: str) -> dict:
    data = yaml.safe_load((CONFIG / "sim_cell.yaml").read_text())
    return data[f"/**/{node}"]["ros__parameters"]


def test_the_in_process_parameters_are_config_sim_cell_yaml():
    assert _block("iiwa_controller") == SIM_CONTROLLER
    assert _block("policy") == SIM_POLICY
    assert _block("collector") == SIM_COLLECTOR
    assert _block("sim_cell")["joint_state_rate_hz"] == SIM_STATE_RATE_HZ
    env = EnvConfig()
    assert env.controller == sim_controller_config()
    policy = sim_policy_config()
    assert (env.step_duration_s, env.start_speed_mps, env.start_yaw_speed_rps) == (
        policy.step_duration_s,
        policy.start_speed_mps,
        policy.start_yaw_speed_rps,
    )


@pytest.fixture(scope="module")
def env():
    e = MTOptCell(EnvConfig(image_size=16))
    e.reset(seed=5)
    yield e
    e.close()


def _above_right_bin(env, height: float) -> np.ndarray:
    center = env.cell.scene_config.bin_center("right")
    return np.array([center[0], center[1], env.cell.floor_z + height])


def test_a_free_move_is_reached_and_ends_at_its_target(env):
    controller: SimController = env.controller
    start = _above_right_bin(env, 0.20)
    first = controller.move(MODE_ABSOLUTE, start, 0.3, 0.5)
    assert first.outcome is Outcome.REACHED
    tol = controller.config.position_tolerance
    assert np.linalg.norm(first.position - start) <= tol
    t0 = env.cell.time
    report = controller.move(MODE_DELTA, (0.03, -0.02, -0.05), 0.1, 0.15)
    assert report.outcome is Outcome.REACHED
    # From the measured pose (where the last move ended), not from the last target.
    planned = first.position + [0.03, -0.02, -0.05]
    assert np.linalg.norm(report.position - planned) <= tol
    assert report.yaw == pytest.approx(0.4, abs=controller.config.yaw_tolerance)
    # The step's motion time, then the monitor's joint-state samples until within tolerance.
    assert 0.15 <= env.cell.time - t0 < 0.15 + 0.5


def test_a_move_into_the_floor_is_clamped_and_one_onto_an_object_is_blocked_and_held(env):
    controller: SimController = env.controller
    env.cell.clear_objects()
    controller.move(MODE_ABSOLUTE, _above_right_bin(env, 0.20), 0.0, 0.5)
    report = controller.move(MODE_DELTA, (0.0, 0.0, -0.5), 0.0, 0.5)
    assert report.outcome is Outcome.CLAMPED and report.clamped
    # The lowest free-space height (config/iiwa.yaml's right_bin_low: 0.025 m above the floor).
    assert env.cell.gripper_height() == pytest.approx(0.025, abs=0.005)
    # Down onto an object: the arm stops short, is held there and stays there.
    env.respawn(seed=5)
    for index in env.cell.active_objects:
        top = env.cell.object_position(index) + [0.0, 0.0, 0.10]
        controller.move(MODE_ABSOLUTE, top, 0.0, 0.8)
        blocked = controller.move(MODE_DELTA, (0.0, 0.0, -0.2), 0.0, 0.3)
        if blocked.outcome is Outcome.BLOCKED:
            cell = env.cell
            stopped_q, stopped = cell.arm_qpos(), cell.tcp_pose()[0]
            cell.advance(0.5)
            # The servos now hold the joints where they stopped instead of pushing on to the
            # target below (the object may push the gripper back up a little).
            np.testing.assert_allclose(cell.data.ctrl[cell.arm_act], stopped_q, atol=1e-9)
            assert cell.tcp_pose()[0][2] >= stopped[2] - 0.001
            return
    pytest.fail("no object of the scene blocked the fingers")


def test_the_gripper_reaches_open_and_closed_or_stalls_on_an_object(env):
    controller: SimController = env.controller
    env.respawn(seed=5)
    controller.move(MODE_ABSOLUTE, _above_right_bin(env, 0.20), 0.0, 0.5)
    assert controller.gripper(close=True) is GripperOutcome.REACHED  # nothing between the pads
    assert controller.gripper(close=False) is GripperOutcome.REACHED
    # The fingers open are about 0.1 m apart: an object under them is grasped.
    for index in env.cell.active_objects:
        position = env.cell.object_position(index)
        controller.move(MODE_ABSOLUTE, position + [0.0, 0.0, 0.12], 0.0, 0.8)
        controller.move(MODE_ABSOLUTE, position + [0.0, 0.0, 0.0], 0.0, 0.5)
        outcome = controller.gripper(close=True)
        if outcome is GripperOutcome.STALLED:
            assert env.cell.gripper_status().object_detected
            return
        controller.gripper(close=False)
    pytest.fail("no object of the scene stalled the fingers")


def test_bad_settings_are_refused(env):
    with pytest.raises(ValueError, match="state_rate_hz"):
        SimController(env.cell, state_rate_hz=0.0)
    with pytest.raises(ValueError, match="step_duration_s"):
        EnvConfig(step_duration_s=-1.0)
    with pytest.raises(ValueError, match="start_yaw_speed_rps"):
        dataclasses.replace(EnvConfig(), start_yaw_speed_rps=0.0)
