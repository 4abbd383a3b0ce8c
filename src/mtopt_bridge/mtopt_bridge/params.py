"""Node parameters from a config dataclass: declare, read, type-check, validate, describe.

Every node keeps its parameters in one dataclass (fields with defaults, a `validate()` that
raises ConfigError naming the bad parameter). `declare_config` declares one ROS parameter per
field with the field's default, so `--params-file` YAMLs and launch files set them as usual.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor

if TYPE_CHECKING:  # keep ConfigError importable from plain logic modules without loading rclpy
    from rclpy.node import Node

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A parameter has a wrong type or value; the message names the parameter."""


def declare_config(node: Node, config_cls: type[ConfigT]) -> ConfigT:
    """One parameter per field (default = the field's default); returns the validated config.

    Ints are accepted for float fields, lists for tuple fields. Raises ConfigError naming the
    parameter on a wrong type, or whatever the dataclass's `validate()` raises for a bad value.
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{config_cls.__name__}.{field.name} needs a default")
        declared = list(default) if isinstance(default, tuple) else default
        descriptor = ParameterDescriptor(description=field.name, dynamic_typing=True)
        value = node.declare_parameter(field.name, declared, descriptor).value
        values[field.name] = _coerce(field.name, value, default)
    config = config_cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def describe_config(config: Any) -> str:
    """`name=value` pairs of a config dataclass, for the start-up log line."""
    return " ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config))


def _coerce(name: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if isinstance(default, tuple):
        if value is None:  # an empty list given on the command line arrives untyped
            return ()
        item_type = type(default[0]) if default else None
        if isinstance(value, list | tuple):
            if item_type is float:  # [1, 2.5] arrives as mixed ints and floats
                value = [float(v) if type(v) is int else v for v in value]
            if item_type is None or all(type(v) is item_type for v in value):
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
