"""`mtopt-launch PKG FILE [name:=value ...]`: run a ROS 2 YAML launch file without `ros2 launch`.

    mtopt-launch mtopt_bringup sim_cell.launch.yaml episodes:=3   # FILE of package PKG
    mtopt-launch path/to/x.launch.yaml episodes:=3                # or a launch file by path
    mtopt-launch --print mtopt_bringup sim_cell.launch.yaml       # resolved command lines only

As `ros2 launch`: when the first argument is an existing file it is the launch file and every
following argument is a launch argument; otherwise it is a package, and FILE is the one file of
that name anywhere under the package's share directory (ament index).

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
from mtopt_launch.packages import find_launch_file
from mtopt_launch.parser import parse_cli_args, parse_launch_file
from mtopt_launch.runner import LaunchRunner, RunnerConfig

EXIT_FAILED = 1
EXIT_USAGE = 2
LAUNCH_FILE_SUFFIXES = (".yaml", ".yml", ".py", ".xml")


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
    parser.add_argument(
        "package_or_file",
        metavar="PKG|PATH",
        help="package whose share directory holds the launch file, or the path of a YAML "
        "launch file (top-level 'launch:' list)",
    )
    parser.add_argument(
        "launch_args",
        nargs="*",
        metavar="[FILE] name:=value",
        help="with PKG: the launch file's name, then the launch arguments (override defaults)",
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


def locate_launch_file(package_or_file: str, rest: list[str]) -> tuple[Path, list[str]]:
    """(launch file, launch arguments) from the positional arguments, as `ros2 launch` reads
    them: an existing file is the launch file itself, anything else names a package."""
    if os.path.isfile(package_or_file):
        return Path(package_or_file), rest
    if "/" in package_or_file or package_or_file.endswith(LAUNCH_FILE_SUFFIXES):
        raise LaunchError(f"launch file not found: {package_or_file}")
    if not rest or ":=" in rest[0]:
        raise LaunchError(
            f"give the launch file of package '{package_or_file}': "
            f"mtopt-launch {package_or_file} FILE [name:=value ...]"
        )
    return find_launch_file(package_or_file, rest[0]), rest[1:]


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
            if node.respawn:
                limit = node.respawn_max_retries
                retries = f", at most {limit} times" if limit >= 0 else ""
                flags.append(f"respawn (after {node.respawn_delay:g} s{retries})")
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
        launch_file, launch_args = locate_launch_file(options.package_or_file, options.launch_args)
        cli_args = parse_cli_args(launch_args)
        description = parse_launch_file(launch_file, cli_args)
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
