"""What a parsed launch file describes: plain data, no processes.

`parser.parse_launch_file` produces a `LaunchDescription`; `runner.LaunchRunner` runs one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LaunchError(Exception):
    """Base class of every error mtopt-launch reports to the user (printed without traceback)."""


class LaunchFileError(LaunchError):
    """A launch file is wrong. The message starts with `file:line:` (`file:` if line is 0)."""

    def __init__(self, file: Path | str, line: int, message: str):
        self.file, self.line, self.problem = str(file), line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class LaunchArgumentError(LaunchError):
    """Command-line launch arguments are malformed, unknown, or a required one is missing."""


@dataclass(frozen=True)
class SourceLocation:
    """Where an entity was declared: launch file path and 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class LaunchArgument:
    """A declared launch argument (`arg` tag) and the value it ended up with."""

    name: str
    default: str | None  # unevaluated default text; None = required
    description: str
    value: str  # the effective value (command line, include `arg`, or default)
    source: SourceLocation


@dataclass(frozen=True)
class ParamFile:
    """`param: {from: FILE}`: a ROS 2 parameter YAML file passed as `--params-file`."""

    path: str


@dataclass(frozen=True)
class InlineParams:
    """One `param: {name: X, value: Y}` entry (nested `param` lists become nested dicts)."""

    values: dict[str, Any]


@dataclass
class NodeLaunch:
    """One node to start: everything needed to build its command line."""

    pkg: str
    executable: str
    name: str | None  # None = the node's own default name (no `__node` remap)
    namespace: str | None  # absolute, e.g. "/demo"; None = no `__ns` remap
    source: SourceLocation
    # In file order; later entries override earlier ones (as with repeated --params-file).
    parameters: list[ParamFile | InlineParams] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)  # `args`: before --ros-args
    ros_arguments: list[str] = field(default_factory=list)  # `ros_args`: extra ROS args
    output: str = "log"  # "screen" | "log" | "both" (ros2 launch's default is "log")
    required: bool = False  # `on_exit: shutdown`: its exit shuts the whole launch down
    # `respawn`: start it again when it exits (any exit code) while the launch is not shutting
    # down, after `respawn_delay` seconds, at most `respawn_max_retries` times (< 0: no limit).
    respawn: bool = False
    respawn_delay: float = 0.0
    respawn_max_retries: int = -1
    env: dict[str, str | None] = field(default_factory=dict)  # overrides; None = unset

    @property
    def param_files(self) -> list[str]:
        """Paths of the `param: {from: ...}` files, in order."""
        return [p.path for p in self.parameters if isinstance(p, ParamFile)]

    @property
    def inline_params(self) -> dict[str, Any]:
        """All inline parameters merged (later entries win)."""
        merged: dict[str, Any] = {}
        for p in self.parameters:
            if isinstance(p, InlineParams):
                merged.update(p.values)
        return merged

    @property
    def fully_qualified_name(self) -> str | None:
        """`/ns/name` (or `/name`), or None when the launch file gives no name."""
        if self.name is None:
            return None
        ns = self.namespace or "/"
        return ns.rstrip("/") + "/" + self.name

    @property
    def label(self) -> str:
        """Output prefix: fully qualified name without the leading slash, else the exec name."""
        if self.name is None:
            return self.executable
        return self.fully_qualified_name.lstrip("/")


@dataclass
class LaunchDescription:
    """A fully evaluated launch file: declared arguments, final configurations, nodes."""

    file: Path
    arguments: list[LaunchArgument]
    configurations: dict[str, str]
    nodes: list[NodeLaunch]
