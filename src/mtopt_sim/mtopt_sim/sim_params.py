"""A simulated cell's node parameters: config/sim_cell.yaml's overrides of the robot cell's
defaults (config/policy.yaml, collector.yaml, iiwa.yaml), for the in-process paths (the gym
env, bulk collection, the evaluator) that run those nodes' logic without ROS. Light: no
simulator import. test/sim/test_controller.py keeps them equal to the YAML file."""

from __future__ import annotations

import dataclasses

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_policy.config import CollectorConfig, PolicyConfig

#: `/**/collector`: oracle labels and sequencing, respawn when fewer than 5 objects are left.
SIM_COLLECTOR = {
    "use_oracle": True,
    "use_oracle_for_sequencing": True,
    "respawn_when_empty": True,
    "respawn_below": 5,
}
#: `/**/policy`: the motion time of a step and the speed of the pre-episode moves.
SIM_POLICY = {"step_duration_s": 0.15, "start_speed_mps": 0.5}
#: `/**/iiwa_controller`: the simulated arm may move faster than the robot's defaults, and the
#: tolerances fit the simulated servos.
SIM_CONTROLLER = {
    "max_joint_velocity": 2.0,
    "position_tolerance": 0.004,
    "stall_window": 0.2,
    "stall_joint_threshold": 0.002,
    "gripper_timeout": 1.5,
    "joint_state_timeout": 1.0,  # no effect in simulated time; kept equal to sim_cell.yaml
}
#: `/**/sim_cell` joint_state_rate_hz (also the gripper state): how often the controller's
#: monitors get a sample.
SIM_STATE_RATE_HZ = 50.0


def sim_collector_config() -> CollectorConfig:
    """The collector node's parameters on a simulated cell (defaults + SIM_COLLECTOR)."""
    return dataclasses.replace(CollectorConfig(), **SIM_COLLECTOR)


def sim_policy_config() -> PolicyConfig:
    """The policy node's parameters on a simulated cell (defaults + SIM_POLICY)."""
    return dataclasses.replace(PolicyConfig(), **SIM_POLICY).validate()


def sim_controller_config() -> IiwaControllerConfig:
    """The arm controller's parameters on a simulated cell (defaults + SIM_CONTROLLER)."""
    return dataclasses.replace(IiwaControllerConfig(), **SIM_CONTROLLER).validate()
