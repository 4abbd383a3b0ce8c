"""`mtopt-launch FILE [name:=value ...]`: run a ROS 2 YAML launch file without `ros2 launch`.

    mtopt-launch launch/demo.launch.yaml episodes:=2
    mtopt-launch --print launch/demo.launch.yaml     # show resolved command lines, run nothing

Exit status: 0 when all nodes finished cleanly (or stopped cleanly on Ctrl-C), 1 when a node
failed (the message names it), 2 for a bad launch file or bad launch arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mtopt_launch.commands import node_command, resolve_executable
from mtopt_launch.description import InlineParams, LaunchDescription, LaunchError
from mtopt_launch.parser import parse_cli_args, parse_launch_file
from mtopt_launch.runner import LaunchRunner, RunnerConfig

EXIT_FAILED = 1
EXIT_USAGE = 2


def default_log_dir() -> Path:
    """ROS 2's log location: $ROS_LOG_DIR, else $ROS_HOME/log, else ~/.ros/log."""
    if os.environ.get("ROS_LOG_DIR"):
        return Path(os.environ["ROS_LOG_DIR"])
    ros_home = os.environ.get("ROS_HOME")
    return Path(ros_home) / "log" if ros_home else Path.home() / ".ros" / "log"


def build_arg_parser() -> argparse.ArgumentParser:
    """Command-line interface of mtopt-launch."""
    parser = argparse.ArgumentParser(
        prog="mtopt-launch",
        description="Run a ROS 2 YAML launch file (the format `ros2 launch` reads): every node "
        "becomes a process with --ros-args for its name, namespace, parameters and remaps.",
    )
    parser.add_argument("file", type=Path, help="YAML launch file (top-level 'launch:' list)")
    parser.add_argument(
        "launch_args",
        nargs="*",
        metavar="name:=value",
        help="launch arguments (override defaults)",
    )
    parser.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the declared arguments and each node's command line, run nothing",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="directory for this run's launch.log (default: $ROS_LOG_DIR, $ROS_HOME/log or "
        "~/.ros/log, in a per-run subdirectory)",
    )
    parser.add_argument(
        "--sigint-timeout",
        type=float,
        default=RunnerConfig.sigint_timeout_s,
        help="seconds to wait after SIGINT before SIGTERM (default %(default)s)",
    )
    parser.add_argument(
        "--sigterm-timeout",
        type=float,
        default=RunnerConfig.sigterm_timeout_s,
        help="seconds to wait after SIGTERM before SIGKILL (default %(default)s)",
    )
    return parser


def format_plan(description: LaunchDescription) -> str:
    """Human-readable plan: arguments, then per node its command line and inline params."""
    lines = [f"# launch file: {description.file}"]
    for arg in description.arguments:
        default = "required" if arg.default is None else f"default {arg.default!r}"
        lines.append(f"# arg {arg.name} = {arg.value!r} ({default})")
    with tempfile.TemporaryDirectory(prefix="mtopt-launch-print-") as tmp:
        for node in description.nodes:
            executable = resolve_executable(node.pkg, node.executable)
            command = node_command(node, executable, Path(tmp))
            flags = [f"output={node.output}"]
            if node.required:
                flags.append("required (on_exit: shutdown)")
            lines.append(
                f"# node {node.label} (pkg {node.pkg}, exec {node.executable}; "
                f"{', '.join(flags)}; {node.source})"
            )
            lines.append(shlex.join(command))
            for params in node.parameters:
                if isinstance(params, InlineParams):
                    lines.append(f"#   inline params: {yaml.safe_dump(params.values).strip()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mtopt-launch` console script."""
    options = build_arg_parser().parse_args(argv)
    try:
        cli_args = parse_cli_args(options.launch_args)
        description = parse_launch_file(options.file, cli_args)
        if options.print_only:
            print(format_plan(description))
            return 0
        for node in description.nodes:  # fail before starting anything
            resolve_executable(node.pkg, node.executable)
    except LaunchError as exc:
        print(f"mtopt-launch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log_dir = options.log_dir
    if log_dir is None:
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
        log_dir = default_log_dir() / f"mtopt-launch-{stamp}-{os.getpid()}"
    config = RunnerConfig(
        sigint_timeout_s=options.sigint_timeout,
        sigterm_timeout_s=options.sigterm_timeout,
        log_file=log_dir / "launch.log",
    )
    try:
        return LaunchRunner(description, config).run()
    except LaunchError as exc:
        print(f"mtopt-launch: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
