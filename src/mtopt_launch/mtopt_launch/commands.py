"""From a `NodeLaunch` to a command line: executable lookup and ROS arguments.

The command line is the one launch_ros builds:

    <exe> [args] [--ros-args <ros_args>] --ros-args -r __node:=NAME -r __ns:=/NS
          --params-file F ... -r from:=to ...

Inline parameters are written to a parameter YAML keyed by the node's fully qualified name
(or `/**` when the node has no name), like launch_ros does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from mtopt_launch.description import InlineParams, LaunchError, NodeLaunch, ParamFile
from mtopt_launch.packages import PackageLookupError, find_package_executable


class ExecutableNotFoundError(LaunchError):
    """No executable `exec` of package `pkg` was found. The message says where we looked."""


def resolve_executable(pkg: str, executable: str) -> Path:
    """The program of a node: `<prefix>/lib/<pkg>/<exec>`, with the prefix of `pkg` from the
    ament index (as launch_ros does; see `packages`)."""
    try:
        return find_package_executable(pkg, executable)
    except PackageLookupError as exc:
        raise ExecutableNotFoundError(
            f"executable '{executable}' of package '{pkg}' not found: {exc}"
        ) from None


def inline_params_document(node: NodeLaunch, values: dict) -> dict:
    """The parameter YAML document for inline params of `node`: keyed by the fully qualified
    name when the launch file fixes both name and namespace, else `/**` (as launch_ros)."""
    key = node.fully_qualified_name if node.namespace is not None else None
    key = key or "/**"
    return {key: {"ros__parameters": values}}


def write_inline_params(node: NodeLaunch, values: dict, directory: Path, index: int) -> Path:
    """Write one inline-params YAML for `node` into `directory`; returns its path."""
    safe = (node.label or node.executable).replace("/", "__")
    path = directory / f"{safe}.{index}.params.yaml"
    text = yaml.safe_dump(inline_params_document(node, values), default_flow_style=False)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def node_command(node: NodeLaunch, executable: Path, params_dir: Path) -> list[str]:
    """The full command line for `node`; inline parameter files are written to `params_dir`."""
    cmd = [str(executable), *node.arguments]
    if node.ros_arguments:
        cmd += ["--ros-args", *node.ros_arguments]
    cmd.append("--ros-args")
    if node.name is not None:
        cmd += ["-r", f"__node:={node.name}"]
    if node.namespace is not None:
        cmd += ["-r", f"__ns:={node.namespace}"]
    for index, params in enumerate(node.parameters):
        if isinstance(params, ParamFile):
            cmd += ["--params-file", params.path]
        elif isinstance(params, InlineParams):
            path = write_inline_params(node, params.values, params_dir, index)
            cmd += ["--params-file", str(path)]
    for source, target in node.remaps:
        cmd += ["-r", f"{source}:={target}"]
    return cmd


def node_environment(node: NodeLaunch, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a node process: the launcher's, the launch file's overrides, and
    PYTHONUNBUFFERED=1 so Python nodes' output arrives line by line."""
    env = dict(os.environ if base is None else base)
    for name, value in node.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PYTHONUNBUFFERED"] = "1"
    return env
