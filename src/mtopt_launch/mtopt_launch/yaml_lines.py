"""YAML loading that remembers line numbers, so launch-file errors can point at a line.

Mappings load as `LineDict` (a dict with `.line` and `.key_lines`), sequences as `LineList`
(a list with `.line`). Scalars load as plain Python values; an error about a scalar points at
the line of the key that holds it. Duplicate keys are an error (plain YAML keeps the last one
silently, which hides typos in launch files).
"""

from __future__ import annotations

from typing import Any

import yaml


class LineDict(dict):
    """A YAML mapping with the 1-based line of the mapping and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        """Line of `key` if present, else the line of the mapping itself."""
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A YAML sequence with the 1-based line where it starts."""

    line: int = 0
    item_lines: list[int]


class YamlLoadError(ValueError):
    """The file is not valid YAML. The message names the file and line (0 = unknown)."""

    def __init__(self, source: str, line: int, problem: str):
        self.source, self.line, self.problem = source, line, problem
        super().__init__(f"{source}:{line}: invalid YAML: {problem}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader building LineDict/LineList with line numbers (1-based)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "unhashable mapping key", key_node.start_mark
            ) from None
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    seq = LineList(loader.construct_object(child, deep=True) for child in node.value)
    seq.line = node.start_mark.line + 1
    seq.item_lines = [child.start_mark.line + 1 for child in node.value]
    return seq


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_with_lines(text: str, source: str) -> Any:
    """Parse YAML text; mappings/sequences carry line numbers. Errors name `source` and line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlLoadError(source, line, exc.problem or exc.context or str(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlLoadError(source, 0, str(exc)) from None
