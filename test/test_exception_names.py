"""No two exception classes of src/ share a name.

Two classes with one name let `from a import XError` shadow `from b import XError` in a module
that loads both, and an `except XError` then catches the wrong one: a bad file then ends in a
traceback instead of the clear refusal (as with Q-network and success-detector checkpoints,
`CheckpointError` and `SDCheckpointError`).
"""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
BUILTIN_EXCEPTIONS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def exception_classes(src: Path) -> dict[str, list[str]]:
    """Exception class name -> where each class of that name is defined ("file:line")."""
    classes: list[tuple[str, set[str], str]] = []
    for path in sorted(src.rglob("*.py")):
        if any(part.endswith(".egg-info") for part in path.parts):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {_base_name(base) for base in node.bases}
                classes.append((node.name, bases, f"{path.relative_to(src)}:{node.lineno}"))
    # A class is an exception when a base is a builtin exception or an exception of src/.
    known = set(BUILTIN_EXCEPTIONS)
    while True:
        found = {name for name, bases, _ in classes if bases & known} - known
        if not found:
            break
        known |= found
    where = defaultdict(list)
    for name, bases, location in classes:
        if bases & known:
            where[name].append(location)
    return dict(where)


def duplicates(src: Path) -> dict[str, list[str]]:
    return {name: places for name, places in exception_classes(src).items() if len(places) > 1}


def test_no_two_exception_classes_share_a_name():
    assert duplicates(SRC) == {}


def test_checker_finds_two_checkpoint_errors(tmp_path):
    (tmp_path / "a.py").write_text("class CheckpointError(ValueError):\n    pass\n")
    (tmp_path / "b.py").write_text(
        "import x\n\nclass Base(RuntimeError):\n    pass\n\n"
        "class CheckpointError(Base):\n    pass\n\n"
        "class Config(x.Thing):\n    pass\n"
    )
    (tmp_path / "c.py").write_text("class Config:\n    pass\n")  # not an exception
    assert duplicates(tmp_path) == {"CheckpointError": ["a.py:1", "b.py:6"]}
