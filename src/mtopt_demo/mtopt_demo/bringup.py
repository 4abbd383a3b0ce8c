"""mtopt_bringup's launch and parameter files, as the demo uses them.

The files are found through the ament index (`get_package_share_directory("mtopt_bringup")`,
what `ros2 launch` and `$(find-pkg-share)` use), so the demo runs from any directory. Each stage
that changes parameters gets its own copy of the config directory (`stage_config`), which the
launch file takes as `config_dir:=`.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ament_index_python.packages import get_package_share_directory

from mtopt_demo.episodes import LIFT_TASK

BRINGUP = "mtopt_bringup"
SIM_CELL_LAUNCH = Path("launch") / "sim_cell.launch.yaml"
CONFIG_DIR = Path("config")
POLICY_CONFIG = CONFIG_DIR / "policy.yaml"
COLLECTOR_CONFIG = CONFIG_DIR / "collector.yaml"
LOGGER_CONFIG = CONFIG_DIR / "logger.yaml"
SIM_CELL_CONFIG = CONFIG_DIR / "sim_cell.yaml"
FASTDDS_PROFILE = CONFIG_DIR / "fastdds.xml"


class BringupError(RuntimeError):
    """mtopt_bringup or one of its files is missing, or a parameter file lacks a key."""


def bringup_file(relative: Path | str) -> Path:
    """A file of mtopt_bringup's share directory, e.g. `launch/sim_cell.launch.yaml`."""
    try:
        share = Path(get_package_share_directory(BRINGUP))
    except (LookupError, OSError) as exc:  # not in the index; AMENT_PREFIX_PATH unset
        raise BringupError(
            f"package {BRINGUP} not found in the ament index ({exc}); run `make setup`, or"
            " source the workspace's install/setup.bash"
        ) from None
    path = share / relative
    if not path.exists():
        raise BringupError(f"{path} does not exist ({BRINGUP} is installed at {share})")
    return path


def lift_only_weights(registry: Any) -> list[str]:
    """Collector `task_weights` under which LIFT_TASK is the only lift task commanded (place
    tasks keep their weights: pick -> place sequencing still empties the gripper)."""
    lift_skill = registry.skill_of(LIFT_TASK)
    return [f"{name}=0" for name in registry.tasks_of_skill(lift_skill) if name != LIFT_TASK]


def stage_config(
    run_dir: Path,
    name: str,
    scripted_fraction: float | None = None,
    task_weights: Sequence[str] = (),
    policy_params: Mapping[str, Any] | None = None,
    collector_params: Mapping[str, Any] | None = None,
) -> Path:
    """A copy of mtopt_bringup's config/ for one stage (`run_dir/config_<name>`): policy.yaml's
    `scripted_fraction` and collector.yaml's `task_weights` replaced when given, and policy
    parameters `policy_params` (keys of policy.yaml) and collector parameters
    `collector_params` (replaced in every file that sets them for the collector: sim_cell.yaml
    overrides collector.yaml on the simulated cell). A `policy_camera` that is not one of the
    cell's three cameras (the sim's `wrist`) is also published by the sim cell and recorded by
    the logger."""
    source = bringup_file(CONFIG_DIR)
    target = Path(run_dir) / f"config_{name}"
    shutil.copytree(source, target)
    edits: list[tuple[str, str, str, Any, bool]] = []  # file, node, key, value, may add key
    if scripted_fraction is not None:
        edits.append(
            (POLICY_CONFIG.name, "/**/policy", "scripted_fraction", scripted_fraction, False)
        )
    if task_weights:
        edits.append(
            (COLLECTOR_CONFIG.name, "/**/collector", "task_weights", list(task_weights), False)
        )
    for key, value in (policy_params or {}).items():
        edits.append((POLICY_CONFIG.name, "/**/policy", key, value, False))
    camera = (policy_params or {}).get("policy_camera")
    if camera is not None:
        logger = yaml.safe_load((target / LOGGER_CONFIG.name).read_text())
        cameras = list(logger["/**/logger"]["ros__parameters"]["camera_names"])
        if camera not in cameras:
            cameras.append(camera)
            edits.append((LOGGER_CONFIG.name, "/**/logger", "camera_names", cameras, False))
            edits.append((SIM_CELL_CONFIG.name, "/**/sim_cell", "cameras", cameras, True))
    for key, value in (collector_params or {}).items():
        files = [
            name for name in (COLLECTOR_CONFIG.name, SIM_CELL_CONFIG.name)
            if key in _node_params(target / name, "/**/collector")
        ]  # fmt: skip
        if not files:
            raise BringupError(f"{target}: no collector parameter {key} to override")
        edits.extend((name, "/**/collector", key, value, False) for name in files)
    for file_name, node, key, value, may_add in edits:
        path = target / file_name
        data = yaml.safe_load(path.read_text())
        params = data[node]["ros__parameters"]
        if key not in params and not may_add:
            raise BringupError(f"{path}: no parameter {key} under {node} to override")
        params[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def _node_params(path: Path, node: str) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    return (data.get(node) or {}).get("ros__parameters") or {}


def ros_environment(say: Callable[[str], None]) -> None:
    """A private DDS domain unless the caller chose one; local discovery; the cells' Fast DDS
    profile. Set in this process's environment, which the launched nodes inherit."""
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(bringup_file(FASTDDS_PROFILE)))
    say(
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
    )
