"""Every node of every launch file reads its parameters cleanly: no unknown key, no wrong type.

Each node gets exactly the command line mtopt-launch would give it (the config/ files and the
inline parameters it writes as YAML), and reads it with its own config dataclass, the way the
node does at start. A misspelt key in a config file or launch file fails here, naming it.
"""

import importlib
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node

from mtopt_bridge.params import declare_config
from mtopt_launch.commands import node_command
from mtopt_launch.parser import parse_launch_file

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted({*ROOT.glob("launch/*.launch.yaml"), *ROOT.glob("src/*/launch/*.yaml")})

#: The config dataclass each executable reads its parameters into.
CONFIG_CLASSES = {
    "sim_cell_node": "mtopt_sim.sim_cell_node:SimCellNodeConfig",
    "iiwa_controller_node": "mtopt_iiwa.config:IiwaControllerConfig",
    "reset_bin_node": "mtopt_reset_bin.config:ResetBinConfig",
    "policy_node": "mtopt_policy.config:PolicyConfig",
    "collector_node": "mtopt_policy.config:CollectorConfig",
    "mtopt-wait-collectors": "mtopt_policy.wait_collectors_node:WaitCollectorsConfig",
    "logger_node": "mtopt_logger.config:LoggerConfig",
    "sd_node": "mtopt_sd.sd_node:SDNodeConfig",
    "learner_node": "mtopt_learner.config:LearnerConfig",
    "camera_node": "mtopt_camera.config:CameraConfig",
}

#: Launch arguments that make every optional node appear (and fill required arguments).
LAUNCH_ARGS = {
    "sim_cell.launch.yaml": {"cells": "2", "episodes": "3", "sd_checkpoint": "/tmp/sd.ckpt"},
    "cell.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt"},
    "sim_learning.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt", "steps": "10"},
    "robot_cell.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt"},
    "offline_learning.launch.yaml": {"bag_dir": "/tmp/episodes", "out_dir": "/tmp/run"},
}


def _config_class(executable: str):
    module, _, name = CONFIG_CLASSES[executable].partition(":")
    return getattr(importlib.import_module(module), name)


def test_the_launch_files_are_found():
    names = {path.name for path in LAUNCH_FILES}
    assert {"sim_cell.launch.yaml", "robot_cell.launch.yaml"} <= names, LAUNCH_FILES


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda path: path.name)
def test_every_node_reads_its_launch_parameters(launch_file, tmp_path):
    description = parse_launch_file(launch_file, LAUNCH_ARGS.get(launch_file.name, {}))
    assert description.nodes
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        for index, launched in enumerate(description.nodes):
            assert launched.executable in CONFIG_CLASSES, f"{launched.executable}: add it above"
            params_dir = tmp_path / str(index)
            params_dir.mkdir()
            command = node_command(launched, Path(launched.executable), params_dir)
            node = Node(
                "unnamed",
                context=context,
                cli_args=command[1:],
                use_global_arguments=False,
            )
            try:
                declare_config(node, _config_class(launched.executable))
            finally:
                node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
