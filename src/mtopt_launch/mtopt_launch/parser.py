"""Parser of ROS 2 YAML launch files (the `launch_yaml` / `launch_ros` frontend format).

The file is read and evaluated in document order, as `ros2 launch` visits it: `arg` and `let`
set launch configurations, `group` scopes them, `include` reads another file, `node` becomes a
`NodeLaunch`. Anything outside the supported subset is an error naming the tag or key and the
line, never silently ignored. Spellings follow launch_ros so the same files run under
`ros2 launch` on a full ROS 2 install (see README.md for the list and the differences).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtopt_launch.description import (
    InlineParams,
    LaunchArgument,
    LaunchArgumentError,
    LaunchDescription,
    LaunchFileError,
    NodeLaunch,
    ParamFile,
    SourceLocation,
)
from mtopt_launch.substitutions import (
    Substitution,
    SubstitutionContext,
    SubstitutionError,
    evaluate,
    parse_substitutions,
)
from mtopt_launch.yaml_lines import LineDict, LineList, YamlLoadError, load_yaml_with_lines

SUPPORTED_TAGS = (
    "arg",
    "let",
    "node",
    "group",
    "push-ros-namespace",
    "push_ros_namespace",
    "include",
    "set_env",
    "unset_env",
)
CONDITION_KEYS = ("if", "unless")
NODE_KEYS = (
    "pkg",
    "exec",
    "name",
    "namespace",
    "param",
    "remap",
    "args",
    "ros_args",
    "output",
    "on_exit",
    "respawn",
    "respawn_delay",
    "respawn_max_retries",
    "env",
    *CONDITION_KEYS,
)
OUTPUT_MODES = ("screen", "log", "both")
MAX_INCLUDE_DEPTH = 32
_NODE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NS_TOKEN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLI_ARG_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*):=(.*)$", re.DOTALL)


def parse_cli_args(argv: list[str]) -> dict[str, str]:
    """`["name:=value", ...]` -> dict. Raises LaunchArgumentError for anything else."""
    result: dict[str, str] = {}
    for item in argv:
        match = _CLI_ARG_RE.match(item)
        if match is None:
            raise LaunchArgumentError(f"launch argument {item!r} is not of the form name:=value")
        result[match.group(1)] = match.group(2)
    return result


def parse_launch_file(
    path: str | os.PathLike,
    cli_args: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LaunchDescription:
    """Read and evaluate a YAML launch file.

    `cli_args` are `name:=value` launch arguments (they override `arg` defaults; names that no
    `arg` in the file or its includes declares are an error). `environ` is the environment
    `$(env ...)` reads and nodes inherit (default: os.environ). Raises LaunchFileError
    (file:line: problem) or LaunchArgumentError.
    """
    cli_args = dict(cli_args or {})
    state = _State(environ=dict(os.environ if environ is None else environ))
    root = Path(path).absolute()
    scope = _Scope(configurations=dict(cli_args), ros_namespace=None, environ=state.environ)
    try:
        _FileParser(root, state, include_stack=()).run(scope)
    except LaunchFileError as exc:
        unknown = sorted(set(cli_args) - state.declared_names)
        if unknown and state.declared_names and "missing launch argument" in exc.problem:
            raise LaunchArgumentError(
                f"{exc}; unknown launch argument(s) given: {', '.join(unknown)}"
            ) from None
        raise
    unknown = [name for name in cli_args if name not in state.declared_names]
    if unknown:
        raise LaunchArgumentError(
            f"unknown launch argument(s): {', '.join(unknown)}; {root.name} declares: "
            + _describe_args(state.arguments)
        )
    return LaunchDescription(
        file=root,
        arguments=state.arguments,
        configurations=dict(scope.configurations),
        nodes=state.nodes,
    )


def _describe_args(arguments: list[LaunchArgument]) -> str:
    if not arguments:
        return "no arguments"
    parts = []
    for a in arguments:
        default = "required" if a.default is None else f"default {a.default!r}"
        parts.append(f"{a.name} ({default})")
    return ", ".join(parts)


@dataclass
class _State:
    """Results gathered across the main file and its includes."""

    environ: dict[str, str]
    arguments: list[LaunchArgument] = field(default_factory=list)
    declared_names: set[str] = field(default_factory=set)
    nodes: list[NodeLaunch] = field(default_factory=list)


@dataclass
class _Scope:
    """The launch context: configurations, pushed ROS namespace, environment overrides."""

    configurations: dict[str, str]
    ros_namespace: str | None
    environ: dict[str, str]
    env_overrides: dict[str, str | None] = field(default_factory=dict)

    def copy(self) -> _Scope:
        return _Scope(
            dict(self.configurations),
            self.ros_namespace,
            dict(self.environ),
            dict(self.env_overrides),
        )


class _FileParser:
    """Evaluates the entities of one launch file."""

    def __init__(self, path: Path, state: _State, include_stack: tuple[Path, ...]):
        self.path = path
        self.state = state
        self.include_stack = (*include_stack, path)

    # -- helpers ------------------------------------------------------------------------------

    def fail(self, line: int, message: str) -> LaunchFileError:
        return LaunchFileError(self.path, line, message)

    def subst(self, text: str, scope: _Scope, line: int, what: str) -> str:
        ctx = SubstitutionContext(scope.configurations, self.path, scope.environ)
        try:
            return evaluate(parse_substitutions(text), ctx)
        except SubstitutionError as exc:
            raise self.fail(line, f"{what}: {exc}") from None

    def check_keys(self, tag: str, attrs: LineDict, allowed: tuple[str, ...]) -> None:
        for key in attrs:
            if key not in allowed:
                hint = ""
                if tag == "node" and key == "required":
                    hint = " (ROS 2 spells a required node `on_exit: shutdown`)"
                raise self.fail(
                    attrs.line_of(key),
                    f"unsupported key '{key}' in '{tag}'{hint}; supported: {', '.join(allowed)}",
                )

    def attrs_of(self, tag: str, value: Any, line: int) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(line, f"'{tag}' must be a mapping of attributes, got {_kind(value)}")
        return value

    def string(
        self,
        tag: str,
        attrs: LineDict,
        key: str,
        scope: _Scope,
        *,
        required: bool = False,
        substitute: bool = True,
    ) -> str | None:
        """A string attribute, substitutions evaluated. Non-strings are an error, as in ros2."""
        if key not in attrs:
            if required:
                raise self.fail(attrs.line, f"'{tag}' needs the attribute '{key}'")
            return None
        value = attrs[key]
        line = attrs.line_of(key)
        if not isinstance(value, str):
            raise self.fail(
                line,
                f"'{key}' of '{tag}' must be a string, got {_kind(value)} {value!r} "
                "(quote it: ros2 launch's YAML frontend does not convert types)",
            )
        if not substitute:
            return value
        return self.subst(value, scope, line, f"'{key}' of '{tag}'")

    def boolean(self, tag: str, attrs: LineDict, key: str, default: bool) -> bool:
        if key not in attrs:
            return default
        value = attrs[key]
        if not isinstance(value, bool):
            raise self.fail(attrs.line_of(key), f"'{key}' of '{tag}' must be true or false")
        return value

    def entity_list(self, tag: str, attrs: LineDict, key: str) -> list[LineDict]:
        """A list-of-mappings attribute such as `param`, `remap`, `arg`, `env`."""
        if key not in attrs:
            return []
        value = attrs[key]
        line = attrs.line_of(key)
        if not isinstance(value, LineList) or not all(isinstance(v, LineDict) for v in value):
            raise self.fail(line, f"'{key}' of '{tag}' must be a list of mappings")
        return list(value)

    def condition_holds(self, tag: str, attrs: LineDict, scope: _Scope) -> bool:
        """Evaluate `if` / `unless` (values true/false/1/0, case-insensitive, as in ros2)."""
        for key in CONDITION_KEYS:
            text = self.string(tag, attrs, key, scope)
            if text is None:
                continue
            lowered = text.strip().lower()
            if lowered in ("true", "1"):
                truth = True
            elif lowered in ("false", "0"):
                truth = False
            else:
                raise self.fail(
                    attrs.line_of(key),
                    f"'{key}' of '{tag}' must evaluate to true/false/1/0, got {text!r}",
                )
            if truth != (key == "if"):
                return False
        return True

    # -- file and entity dispatch ---------------------------------------------------------------

    def run(self, scope: _Scope) -> None:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise LaunchFileError(self.path, 0, f"cannot read: {exc.strerror or exc}") from None
        if self.path.suffix not in (".yaml", ".yml"):
            raise self.fail(
                0, "only YAML launch files (*.launch.yaml) are supported by mtopt-launch"
            )
        try:
            data = load_yaml_with_lines(text, str(self.path))
        except YamlLoadError as exc:
            raise self.fail(exc.line, f"invalid YAML: {exc.problem}") from None
        if not isinstance(data, LineDict) or "launch" not in data:
            raise self.fail(1, "a YAML launch file must have a top-level 'launch:' list")
        if len(data) != 1:
            extra = next(k for k in data if k != "launch")
            raise self.fail(data.line_of(extra), f"unexpected top-level key '{extra}'")
        entities = data["launch"]
        if entities is None:
            return
        if not isinstance(entities, LineList):
            raise self.fail(data.line_of("launch"), "'launch' must be a list of entities")
        self.run_entities(entities, scope)

    def run_entities(self, entities: LineList, scope: _Scope) -> None:
        for item, line in zip(entities, entities.item_lines, strict=True):
            if not isinstance(item, LineDict) or len(item) != 1:
                raise self.fail(
                    line,
                    "each entity must be a mapping with exactly one key, the tag "
                    f"(e.g. '- node: {{...}}'), got {_kind(item)}",
                )
            tag, value = next(iter(item.items()))
            tag_line = item.line_of(tag)
            handler = _HANDLERS.get(tag)
            if handler is None:
                raise self.fail(
                    tag_line,
                    f"unsupported tag '{tag}'; mtopt-launch supports: {', '.join(SUPPORTED_TAGS)}",
                )
            handler(self, value, tag_line, scope)

    # -- tags -------------------------------------------------------------------------------

    def tag_arg(self, value: Any, line: int, scope: _Scope) -> None:
        attrs = self.attrs_of("arg", value, line)
        self.check_keys(
            "arg", attrs, ("name", "default", "description", "choice", *CONDITION_KEYS)
        )
        if not self.condition_holds("arg", attrs, scope):
            return
        name = self.string("arg", attrs, "name", scope, required=True, substitute=False)
        default_text = self.string("arg", attrs, "default", scope, substitute=False)
        description = self.string("arg", attrs, "description", scope, substitute=False) or ""
        choices = []
        for choice in self.entity_list("arg", attrs, "choice"):
            self.check_keys("choice", choice, ("value",))
            choices.append(self.string("choice", choice, "value", scope, required=True))
        self.state.declared_names.add(name)
        if name not in scope.configurations:
            if default_text is None:
                raise self.fail(
                    line,
                    f"missing launch argument '{name}' (no default"
                    + (f"; {description}" if description else "")
                    + f"): give it on the command line as {name}:=VALUE"
                    + (" or in the include's 'arg' list" if len(self.include_stack) > 1 else ""),
                )
            scope.configurations[name] = self.subst(
                default_text, scope, attrs.line_of("default"), f"default of arg '{name}'"
            )
        effective = scope.configurations[name]
        if choices and effective not in choices:
            raise self.fail(
                line, f"launch argument '{name}' is {effective!r}; valid choices: {choices}"
            )
        self.state.arguments.append(
            LaunchArgument(
                name=name,
                default=default_text,
                description=description,
                value=effective,
                source=SourceLocation(str(self.path), line),
            )
        )

    def tag_let(self, value: Any, line: int, scope: _Scope) -> None:
        attrs = self.attrs_of("let", value, line)
        self.check_keys("let", attrs, ("name", "value", *CONDITION_KEYS))
        if not self.condition_holds("let", attrs, scope):
            return
        name = self.string("let", attrs, "name", scope, required=True)
        scope.configurations[name] = self.string("let", attrs, "value", scope, required=True)

    def tag_set_env(self, value: Any, line: int, scope: _Scope) -> None:
        attrs = self.attrs_of("set_env", value, line)
        self.check_keys("set_env", attrs, ("name", "value", *CONDITION_KEYS))
        if not self.condition_holds("set_env", attrs, scope):
            return
        name = self.string("set_env", attrs, "name", scope, required=True)
        env_value = self.string("set_env", attrs, "value", scope, required=True)
        scope.environ[name] = env_value
        scope.env_overrides[name] = env_value

    def tag_unset_env(self, value: Any, line: int, scope: _Scope) -> None:
        attrs = self.attrs_of("unset_env", value, line)
        self.check_keys("unset_env", attrs, ("name", *CONDITION_KEYS))
        if not self.condition_holds("unset_env", attrs, scope):
            return
        name = self.string("unset_env", attrs, "name", scope, required=True)
        scope.environ.pop(name, None)
        scope.env_overrides[name] = None

    def tag_push_ros_namespace(self, value: Any, line: int, scope: _Scope) -> None:
        tag = "push-ros-namespace"
        attrs = self.attrs_of(tag, value, line)
        self.check_keys(tag, attrs, ("namespace", *CONDITION_KEYS))
        if not self.condition_holds(tag, attrs, scope):
            return
        pushed = self.string(tag, attrs, "namespace", scope, required=True)
        namespace = _make_absolute(_prefix_namespace(scope.ros_namespace, pushed))
        self.validate_namespace(namespace, attrs.line_of("namespace"))
        scope.ros_namespace = namespace

    def tag_group(self, value: Any, line: int, scope: _Scope) -> None:
        if isinstance(value, LineList):
            children, scoped, forwarding, keep = value, True, True, []
        else:
            attrs = self.attrs_of("group", value, line)
            self.check_keys(
                "group", attrs, ("children", "scoped", "forwarding", "keep", *CONDITION_KEYS)
            )
            if not self.condition_holds("group", attrs, scope):
                return
            children = attrs.get("children")
            if not isinstance(children, LineList):
                raise self.fail(attrs.line_of("children"), "'group' needs a 'children' list")
            scoped = self.boolean("group", attrs, "scoped", True)
            forwarding = self.boolean("group", attrs, "forwarding", True)
            keep = self.entity_list("group", attrs, "keep")
        kept = {}
        for entry in keep:
            self.check_keys("keep", entry, ("name", "value"))
            kept[self.string("keep", entry, "name", scope, required=True)] = self.string(
                "keep", entry, "value", scope, required=True
            )
        if not scoped:
            scope.configurations.update(kept)
            self.run_entities(children, scope)
            return
        inner = scope.copy()
        if not forwarding:
            inner.configurations.clear()
            inner.ros_namespace = None
        inner.configurations.update(kept)
        self.run_entities(children, inner)

    def tag_include(self, value: Any, line: int, scope: _Scope) -> None:
        attrs = self.attrs_of("include", value, line)
        self.check_keys("include", attrs, ("file", "arg", *CONDITION_KEYS))
        if not self.condition_holds("include", attrs, scope):
            return
        file_text = self.string("include", attrs, "file", scope, required=True)
        target = Path(file_text)
        if not target.is_absolute():
            target = Path.cwd() / target  # as ros2 launch: relative to the working directory
        file_line = attrs.line_of("file")
        if not target.is_file():
            raise self.fail(file_line, f"included launch file not found: {target}")
        target = target.absolute()
        if target in self.include_stack or len(self.include_stack) >= MAX_INCLUDE_DEPTH:
            raise self.fail(file_line, f"recursive include of {target}")
        # Evaluate all include args first, then set them (as ros2: args see the outer scope).
        given = []
        for entry in self.entity_list("include", attrs, "arg"):
            self.check_keys("arg", entry, ("name", "value"))
            given.append(
                (
                    self.string("include arg", entry, "name", scope, required=True),
                    self.string("include arg", entry, "value", scope, required=True),
                )
            )
        # Like ros2's IncludeLaunchDescription, an include is not scoped: its args and lets
        # stay set afterwards. Wrap it in a `group` to scope it.
        scope.configurations.update(given)
        _FileParser(target, self.state, self.include_stack).run(scope)

    def tag_node(self, value: Any, line: int, scope: _Scope) -> None:
        attrs = self.attrs_of("node", value, line)
        self.check_keys("node", attrs, NODE_KEYS)
        if not self.condition_holds("node", attrs, scope):
            return
        pkg = self.string("node", attrs, "pkg", scope, required=True)
        executable = self.string("node", attrs, "exec", scope, required=True)
        name = self.string("node", attrs, "name", scope)
        if name is not None and not _NODE_NAME_RE.match(name):
            raise self.fail(attrs.line_of("name"), f"invalid node name {name!r}")
        own_ns = self.string("node", attrs, "namespace", scope)
        namespace = _make_absolute(_prefix_namespace(scope.ros_namespace, own_ns))
        if namespace is not None:
            self.validate_namespace(namespace, attrs.line_of("namespace"))
        output = self.string("node", attrs, "output", scope) or "log"
        if output not in OUTPUT_MODES:
            raise self.fail(
                attrs.line_of("output"),
                f"'output' of 'node' must be one of {', '.join(OUTPUT_MODES)}, got {output!r}",
            )
        on_exit = self.string("node", attrs, "on_exit", scope)
        if on_exit is not None and on_exit != "shutdown":
            raise self.fail(
                attrs.line_of("on_exit"),
                f"'on_exit' of 'node' supports only 'shutdown', got {on_exit!r}",
            )
        node = NodeLaunch(
            pkg=pkg,
            executable=executable,
            name=name,
            namespace=namespace,
            source=SourceLocation(str(self.path), line),
            output=output,
            required=on_exit == "shutdown",
            respawn=self.respawn(attrs, scope),
            respawn_delay=self.respawn_delay(attrs),
            respawn_max_retries=self.respawn_max_retries(attrs),
            env=dict(scope.env_overrides),
        )
        node.parameters = self.node_params(attrs, scope)
        for remap in self.entity_list("node", attrs, "remap"):
            self.check_keys("remap", remap, ("from", "to"))
            node.remaps.append(
                (
                    self.string("remap", remap, "from", scope, required=True),
                    self.string("remap", remap, "to", scope, required=True),
                )
            )
        node.arguments = self.command_line(attrs, "args", scope)
        node.ros_arguments = self.command_line(attrs, "ros_args", scope)
        for entry in self.entity_list("node", attrs, "env"):
            self.check_keys("env", entry, ("name", "value"))
            env_name = self.string("env", entry, "name", scope, required=True)
            node.env[env_name] = self.string("env", entry, "value", scope, required=True)
        self.state.nodes.append(node)

    # -- node details ---------------------------------------------------------------------------

    def respawn(self, attrs: LineDict, scope: _Scope) -> bool:
        """`respawn`: a string, substitutions allowed, coerced to a bool as launch's
        `coerce_to_type(text, bool)` does: "1"/"0", else a YAML boolean (true/false, True,
        TRUE, yes/no, on/off)."""
        text = self.string("node", attrs, "respawn", scope)
        if text is None:
            return False
        value = _yaml_bool(text)
        if value is None:
            raise self.fail(
                attrs.line_of("respawn"),
                f"'respawn' of 'node' must evaluate to true or false (or 1/0), got {text!r}",
            )
        return value

    def respawn_delay(self, attrs: LineDict) -> float:
        """`respawn_delay`: seconds. launch reads it as `get_attr(data_type=float)`, which the
        YAML frontend does not convert: only a YAML float (`2.0`, not `2` or `"2.0"`) works in
        `ros2 launch`, and a negative value is an error there too."""
        if "respawn_delay" not in attrs:
            return 0.0
        value = attrs["respawn_delay"]
        line = attrs.line_of("respawn_delay")
        if not isinstance(value, float):
            raise self.fail(
                line,
                f"'respawn_delay' of 'node' must be a YAML float such as 2.0, got "
                f"{_kind(value)} {value!r} (ros2 launch reads it without substitutions or "
                "conversion: an int like 2 or a quoted string is an error there)",
            )
        if not math.isfinite(value) or value < 0.0:
            raise self.fail(
                line, f"'respawn_delay' of 'node' must be a finite number >= 0.0, got {value!r}"
            )
        return value

    def respawn_max_retries(self, attrs: LineDict) -> int:
        """`respawn_max_retries` (launch >= 3.1, ROS 2 Jazzy): a YAML int; < 0 = unlimited."""
        if "respawn_max_retries" not in attrs:
            return -1
        value = attrs["respawn_max_retries"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(
                attrs.line_of("respawn_max_retries"),
                f"'respawn_max_retries' of 'node' must be a YAML integer (negative: no limit), "
                f"got {_kind(value)} {value!r} (ros2 launch does not convert strings here)",
            )
        return value

    def command_line(self, attrs: LineDict, key: str, scope: _Scope) -> list[str]:
        raw = self.string("node", attrs, key, scope, substitute=False)
        if raw is None:
            return []
        line = attrs.line_of(key)
        try:
            tokens = shlex.split(raw)
        except ValueError as exc:
            raise self.fail(line, f"'{key}' of 'node': {exc}") from None
        return [self.subst(t, scope, line, f"'{key}' of 'node'") for t in tokens]

    def node_params(self, attrs: LineDict, scope: _Scope) -> list[ParamFile | InlineParams]:
        params: list[ParamFile | InlineParams] = []
        for entry in self.entity_list("node", attrs, "param"):
            if "from" in entry:
                self.check_keys("param", entry, ("from",))
                path_text = self.string("param", entry, "from", scope, required=True)
                path = Path(path_text)
                if not path.is_absolute():
                    path = Path.cwd() / path
                if not path.is_file():
                    raise self.fail(entry.line_of("from"), f"parameter file not found: {path}")
                params.append(ParamFile(os.path.normpath(path)))
            elif "name" in entry:
                params.append(InlineParams(self.inline_param(entry, scope)))
            else:
                raise self.fail(
                    entry.line, "a node 'param' needs either 'from: FILE' or 'name' + 'value'"
                )
        return params

    def inline_param(self, entry: LineDict, scope: _Scope) -> dict[str, Any]:
        self.check_keys("param", entry, ("name", "value", "param"))
        name = self.string("param", entry, "name", scope, required=True)
        has_value, has_nested = "value" in entry, "param" in entry
        if has_value == has_nested:
            raise self.fail(
                entry.line,
                f"param '{name}' needs exactly one of 'value' or a nested 'param' list",
            )
        if has_nested:
            nested: dict[str, Any] = {}
            for child in self.entity_list("param", entry, "param"):
                if "from" in child:
                    raise self.fail(child.line, "'from' is not allowed in a nested 'param'")
                nested.update(self.inline_param(child, scope))
            return {name: nested}
        return {name: self.param_value(entry["value"], entry.line_of("value"), name, scope)}

    def param_value(self, value: Any, line: int, name: str, scope: _Scope) -> Any:
        """YAML-typed values pass through; strings with `$(...)` are evaluated, then typed
        by YAML rules (so `$(var episodes)` with "3" gives the integer 3, as in launch_ros)."""
        if isinstance(value, LineList):
            items = [self.param_value(v, line, name, scope) for v in value]
            if len({type(v) for v in items}) > 1:
                raise self.fail(line, f"param '{name}': list items must all have one type")
            return items
        if isinstance(value, LineDict) or value is None:
            raise self.fail(
                line, f"param '{name}': value must be a scalar or a list, got {_kind(value)}"
            )
        if not isinstance(value, str):
            return value
        try:
            parts = parse_substitutions(value)
        except SubstitutionError as exc:
            raise self.fail(line, f"param '{name}': {exc}") from None
        if not any(isinstance(p, Substitution) for p in parts):
            return "".join(p.text for p in parts)
        text = self.subst(value, scope, line, f"param '{name}'")
        try:
            typed = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(typed, (bool, int, float, str)):
            return typed
        return text

    def validate_namespace(self, namespace: str, line: int) -> None:
        if namespace == "/":
            return
        tokens = namespace.strip("/").split("/")
        if namespace.endswith("/") or not all(_NS_TOKEN_RE.match(t) for t in tokens):
            raise self.fail(line, f"invalid ROS namespace {namespace!r}")


def _prefix_namespace(base: str | None, namespace: str | None) -> str | None:
    """launch_ros semantics: a relative namespace is appended to the pushed one."""
    if namespace is None or namespace == "":
        return base
    if base is None or namespace.startswith("/"):
        return namespace
    return base.rstrip("/") + "/" + namespace


def _make_absolute(namespace: str | None) -> str | None:
    if namespace is None:
        return None
    return namespace if namespace.startswith("/") else "/" + namespace


def _yaml_bool(text: str) -> bool | None:
    """`text` as launch's `coerce_to_type(text, bool)` reads it; None if not a boolean."""
    if text in ("1", "0"):
        return text == "1"
    if not text:
        return None
    try:
        value = yaml.safe_load(text)
    except Exception:  # as launch: any failure to load (e.g. a bad date) means "not a bool"
        return None
    return value if isinstance(value, bool) else None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return type(value).__name__


_HANDLERS = {
    "arg": _FileParser.tag_arg,
    "let": _FileParser.tag_let,
    "node": _FileParser.tag_node,
    "group": _FileParser.tag_group,
    "push-ros-namespace": _FileParser.tag_push_ros_namespace,
    "push_ros_namespace": _FileParser.tag_push_ros_namespace,
    "include": _FileParser.tag_include,
    "set_env": _FileParser.tag_set_env,
    "unset_env": _FileParser.tag_unset_env,
}
