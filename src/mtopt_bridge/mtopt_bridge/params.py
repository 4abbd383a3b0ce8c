"""Node parameters from a config dataclass: declare, read, type-check, validate, describe.

Every node keeps its parameters in one dataclass (fields with defaults, a `validate()` that
raises ConfigError naming the bad parameter). `declare_config` declares one ROS parameter per
field with the field's default, so `--params-file` YAMLs and launch files set them as usual.

A parameter given to the node that no field has (a typo such as `epsilonn`, a key of a removed
option) is an error, not silently ignored: the message names the file (or `-p` argument) that
set it, the node and the key, e.g.
`config/policy.yaml: node /cell0/policy: unknown parameter 'epsilonn' (did you mean 'epsilon'?)`.
Which keys reach the node is rclpy's own resolution (its parameter overrides); the file is
found by reading the `--params-file` / `-p` arguments the process was started with and
matching their node keys (`/**`, `/**/name`, `/ns/*`, ...) the way rclpy does.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import re
import sys
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from rcl_interfaces.msg import ParameterDescriptor

if TYPE_CHECKING:  # keep ConfigError importable from plain logic modules without loading rclpy
    from rclpy.node import Node

ConfigT = TypeVar("ConfigT")

#: Parameters rclpy declares (or reads) itself; a parameter file may set them for any node.
ROS_OWN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
ROS_OWN_PREFIXES = ("qos_overrides.",)

# ROS arguments (after --ros-args) that take a value; only --params-file and -p matter here,
# the others are skipped so their values are not mistaken for options.
_PARAMS_FILE = "--params-file"
_PARAM = ("-p", "--param")
_OTHER_OPTIONS_WITH_VALUE = frozenset(
    {"-r", "--remap", "-e", "--enclave", "--log-level", "--log-config-file", "--log-file-name"}
)

# The arguments rclpy.init was given by run_node (None: it used sys.argv).
_init_args: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "mtopt_init_args", default=None
)


class ConfigError(ValueError):
    """A parameter has a wrong type or value, or is unknown; the message names it."""


def declare_config(node: Node, config_cls: type[ConfigT]) -> ConfigT:
    """One parameter per field (default = the field's default); returns the validated config.

    The fields are the node's complete parameter set: any other parameter given to the node
    (rclpy's own excepted) raises ConfigError naming where it was set. Ints are accepted for
    float fields, lists for tuple fields. Raises ConfigError naming the parameter on a wrong
    type, or whatever the dataclass's `validate()` raises for a bad value.
    """
    raw: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for field in dataclasses.fields(config_cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{config_cls.__name__}.{field.name} needs a default")
        declared = list(default) if isinstance(default, tuple) else default
        descriptor = ParameterDescriptor(description=field.name, dynamic_typing=True)
        raw[field.name] = node.declare_parameter(field.name, declared, descriptor).value
        defaults[field.name] = default
    check_no_unknown_parameters(node, list(raw))
    hints = _tuple_item_types(config_cls)
    values = {
        name: _coerce(name, value, defaults[name], hints.get(name)) for name, value in raw.items()
    }
    config = config_cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def describe_config(config: Any) -> str:
    """`name=value` pairs of a config dataclass, for the start-up log line."""
    return " ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config))


@contextlib.contextmanager
def parameter_error(name: str, *errors: type[Exception]) -> Iterator[None]:
    """Turn `errors` raised inside into a ConfigError naming parameter `name`, e.g. a
    `tasks_file` the task registry cannot load: run_node then reports it like a bad value."""
    try:
        yield
    except errors as exc:
        raise ConfigError(f"parameter {name}: {exc}") from None


@contextlib.contextmanager
def init_arguments(args: Sequence[str] | None) -> Iterator[None]:
    """Within this block declare_config reads `args` (what rclpy.init was given; None means
    sys.argv) to name the file a parameter came from. run_node wraps node construction."""
    token = _init_args.set(None if args is None else list(args))
    try:
        yield
    finally:
        _init_args.reset(token)


# -- unknown parameters ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParameterSource:
    """Parameters one command-line argument sets for the nodes its key matches.

    `origin` is what the error message names: the params file's path, or `-p name:=value`.
    """

    origin: str
    node_key: str  # e.g. "/**/policy", "/cell0/policy", "/**"
    names: frozenset[str]

    def applies_to(self, node_fqn: str) -> bool:
        return node_key_matches(self.node_key, node_fqn)


def node_key_matches(node_key: str, node_fqn: str) -> bool:
    """Whether a parameter file's node key applies to the node `node_fqn`, as rclpy decides:
    a missing leading '/' is added, `/**` matches any number of namespace levels (also none),
    `/*` exactly one name."""
    key = node_key if node_key.startswith("/") else "/" + node_key
    pattern, i = [], 0
    while i < len(key):
        if key.startswith("/**", i):
            pattern.append(r"(/\w+)*")
            i += 3
        elif key.startswith("/*", i):
            pattern.append(r"(/\w+)")
            i += 2
        else:
            pattern.append(re.escape(key[i]))
            i += 1
    return re.fullmatch("".join(pattern), node_fqn) is not None


def ros_argument_sources(argv: Sequence[str]) -> list[ParameterSource]:
    """The `--params-file` and `-p` arguments of a command line, in order.

    Only arguments inside `--ros-args` ... (`--` or the end) count, as for rcl. A params file
    that cannot be read here gives no source (rcl has read it already, or refused to start).
    """
    sources: list[ParameterSource] = []
    in_ros_args = False
    tokens = iter(argv)
    for token in tokens:
        if token == "--ros-args":
            in_ros_args = True
        elif token == "--":
            in_ros_args = False
        elif not in_ros_args:
            continue
        elif token == _PARAMS_FILE:
            path = next(tokens, None)
            if path is not None:
                sources.extend(params_file_sources(path))
        elif token in _PARAM:
            rule = next(tokens, None)
            if rule is not None and ":=" in rule:
                target, _, _ = rule.partition(":=")
                node_key, _, name = target.rpartition(":")
                sources.append(ParameterSource(f"-p {rule}", node_key or "/**", frozenset([name])))
        elif token in _OTHER_OPTIONS_WITH_VALUE:
            next(tokens, None)
    return sources


def params_file_sources(path: str) -> list[ParameterSource]:
    """One source per `ros__parameters` block of a ROS 2 parameter file.

    Node keys nest (`cell0: {policy: {ros__parameters: ...}}` is `cell0/policy`); nested maps
    under `ros__parameters` are dotted parameter names, as rcl reads them.
    """
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    return [
        ParameterSource(path, node_key, frozenset(_flatten_names(block, "")))
        for node_key, block in _parameter_blocks(document)
    ]


def _parameter_blocks(document: Any) -> list[tuple[str, Any]]:
    """(node key, `ros__parameters` value) of every block of a parameter file's document."""
    blocks: list[tuple[str, Any]] = []

    def walk(mapping: Any, node_path: list[str]) -> None:
        if not isinstance(mapping, dict):
            return
        for key, value in mapping.items():
            if key == "ros__parameters" and node_path:
                blocks.append(("/".join(node_path), value))
            else:
                walk(value, [*node_path, str(key)])

    walk(document, [])
    return blocks


def config_from_params_files(
    start: ConfigT, paths: Sequence[str | Path], node_fqn: str
) -> ConfigT:
    """The config node `node_fqn` (e.g. "/cell0/policy") gets from ROS 2 parameter files, for
    programs that run a node's logic without a node: `start`'s values, then every matching
    `ros__parameters` block of each file in order (later ones win, as repeated --params-file
    arguments). The same typing, unknown-parameter and `validate()` rules as `declare_config`;
    an unreadable file or an unknown parameter raises ConfigError naming the file."""
    values = {f.name: getattr(start, f.name) for f in dataclasses.fields(start)}
    defaults = dict(values)
    hints = _tuple_item_types(type(start))
    for path in paths:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the parameter file ({exc})") from None
        for node_key, block in _parameter_blocks(document):
            if not node_key_matches(node_key, node_fqn) or not isinstance(block, dict):
                continue
            for name, value in block.items():
                if name in ROS_OWN_PARAMETERS:
                    continue
                if name not in values:
                    close = difflib.get_close_matches(name, list(values), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ConfigError(f"{path}: node {node_fqn}: unknown parameter {name!r}{hint}")
                values[name] = _coerce(name, value, defaults[name], hints.get(name))
    config = type(start)(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:  # a node's own error type too (e.g. LearnerConfigError)
            files = ", ".join(str(p) for p in paths) or "<defaults>"
            raise ConfigError(f"{files}: node {node_fqn}: {exc}") from None
    return config


def _flatten_names(value: Any, prefix: str) -> Iterable[str]:
    if not isinstance(value, dict):
        return [prefix] if prefix else []
    names: list[str] = []
    for key, item in value.items():
        names.extend(_flatten_names(item, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return names


def check_no_unknown_parameters(
    node: Node, known: Sequence[str], argv: Sequence[str] | None = None
) -> None:
    """Raise ConfigError if the node was given a parameter that is neither in `known`, nor
    declared already, nor rclpy's own. The message names, for each such parameter, the
    params file(s) or `-p` argument(s) of `argv` (default: the arguments rclpy.init got) that
    set it, the node, and the known names."""
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy's resolved overrides
    unknown = [
        name
        for name in overrides
        if name not in known
        and name not in ROS_OWN_PARAMETERS
        and not name.startswith(ROS_OWN_PREFIXES)
        and not node.has_parameter(name)
    ]
    if not unknown:
        return
    if argv is None:
        argv = _init_args.get()
    if argv is None:
        argv = sys.argv
    fqn = node.get_fully_qualified_name()
    sources = [s for s in ros_argument_sources(argv) if s.applies_to(fqn)]
    clauses = []
    for name in unknown:
        origins = list(dict.fromkeys(s.origin for s in sources if name in s.names))
        where = f"{', '.join(origins)}: " if origins else ""
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        clauses.append(f"{where}node {fqn}: unknown parameter {name!r}{hint}")
    raise ConfigError("; ".join(clauses) + f" (known: {', '.join(known)})")


# -- types -----------------------------------------------------------------------------------


def _tuple_item_types(config_cls: type) -> dict[str, type]:
    """Item type of each `tuple[X, ...]` field (an empty default says nothing about it)."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # unresolvable annotations: fall back to the defaults' item types
        return {}
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        if typing.get_origin(hint) is tuple and args and isinstance(args[0], type):
            out[name] = args[0]
    return out


def _coerce(name: str, value: Any, default: Any, item_hint: type | None = None) -> Any:
    expected = type(default)
    if isinstance(default, tuple):
        if value is None:  # an empty list given on the command line arrives untyped
            return ()
        item_type = type(default[0]) if default else item_hint
        if isinstance(value, list | tuple):
            if item_type is float:  # [1, 2.5] arrives as mixed ints and floats
                value = [float(v) if type(v) is int else v for v in value]
            if item_type is None:  # unknown item type: one ROS scalar type throughout
                kinds = {type(v) for v in value}
                if len(kinds) <= 1 and kinds <= {str, int, float, bool}:
                    return tuple(value)
            elif all(type(v) is item_type for v in value):
                return tuple(value)
        raise ConfigError(f"parameter {name} must be a list like {list(default)}, got {value!r}")
    if expected is float and type(value) is int:
        return float(value)
    if type(value) is expected:
        return value
    raise ConfigError(
        f"parameter {name} must be of type {expected.__name__}, got {type(value).__name__}"
        f" {value!r}"
    )
