"""`$(...)` substitutions of ROS 2 launch frontends (the subset mtopt-launch supports).

Grammar (as in ros2/launch `frontend/grammar.lark`): `$(NAME)` or `$(NAME ARG ARG ...)`, one
space between arguments; an argument may be quoted with '...' or "..." and may itself contain
substitutions; a backslash escapes the next character. Supported substitutions:

    $(var NAME)              value of a launch argument / `let` (error if undefined)
    $(env NAME)              environment variable (error if unset)
    $(env NAME DEFAULT)      environment variable, DEFAULT if unset
    $(optenv NAME [DEFAULT]) environment variable, DEFAULT (or "") if unset
    $(dirname)               directory of the launch file being read
    $(filename)              path of the launch file being read
    $(find-pkg-share PKG)    share directory of package PKG (ament index: `packages`)
    $(find-pkg-prefix PKG)   install prefix of package PKG
    $(eval EXPR [MODULES])   str() of the Python expression EXPR, as ros2's PythonExpression:
                             evaluated with the names of `math` in scope (e.g. `floor(2.5)`),
                             plus the modules named in MODULES (comma-separated, default
                             `math`) under their own names. Quote EXPR when it has spaces:
                             `$(eval '$(var cells) >= 2')` -> `True`.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mtopt_launch.packages import PackageLookupError, find_package_prefix, find_package_share

SUPPORTED = (
    "var",
    "env",
    "optenv",
    "dirname",
    "filename",
    "find-pkg-share",
    "find-pkg-prefix",
    "eval",
)


@dataclass(frozen=True)
class Text:
    """Literal text."""

    text: str


@dataclass(frozen=True)
class Substitution:
    """`$(name arg ...)`; each argument is itself a list of parts."""

    name: str
    args: tuple[tuple[Text | Substitution, ...], ...]


Part = Text | Substitution


class SubstitutionError(ValueError):
    """A substitution is malformed, unknown, or cannot be evaluated (message says which)."""


@dataclass(frozen=True)
class SubstitutionContext:
    """What substitutions read: launch configurations, the environment, the current file."""

    configurations: Mapping[str, str]
    launch_file: Path
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def has_substitutions(text: str) -> bool:
    """True when `text` contains at least one `$(...)`."""
    return any(isinstance(p, Substitution) for p in parse_substitutions(text))


def parse_substitutions(text: str) -> list[Part]:
    """Split `text` into literal text and substitutions. Raises SubstitutionError."""
    return _Parser(text).template()


def evaluate(parts: list[Part] | tuple[Part, ...], ctx: SubstitutionContext) -> str:
    """Evaluate parsed parts to a string. Raises SubstitutionError naming what failed."""
    out = []
    for part in parts:
        if isinstance(part, Text):
            out.append(part.text)
        else:
            out.append(_evaluate_one(part, ctx))
    return "".join(out)


def substitute(text: str, ctx: SubstitutionContext) -> str:
    """Parse and evaluate `text`."""
    return evaluate(parse_substitutions(text), ctx)


def _evaluate_one(sub: Substitution, ctx: SubstitutionContext) -> str:
    args = [evaluate(a, ctx) for a in sub.args]

    def arity(low: int, high: int) -> None:
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise SubstitutionError(
                f"$({sub.name}) takes {want} argument(s), got {len(args)}: {args}"
            )

    if sub.name == "var":
        arity(1, 1)
        name = args[0]
        if name not in ctx.configurations:
            known = ", ".join(sorted(ctx.configurations)) or "none"
            raise SubstitutionError(
                f"undefined launch configuration '{name}' in $(var {name}) (defined: {known})"
            )
        return ctx.configurations[name]
    if sub.name == "env":
        arity(1, 2)
        if args[0] in ctx.environ:
            return ctx.environ[args[0]]
        if len(args) == 2:
            return args[1]
        raise SubstitutionError(
            f"environment variable '{args[0]}' is not set in $(env {args[0]}) "
            f"(give a default: $(env {args[0]} DEFAULT))"
        )
    if sub.name == "optenv":
        arity(1, 2)
        return ctx.environ.get(args[0], args[1] if len(args) == 2 else "")
    if sub.name == "dirname":
        arity(0, 0)
        return str(ctx.launch_file.parent)
    if sub.name == "filename":
        arity(0, 0)
        return str(ctx.launch_file)
    if sub.name in ("find-pkg-share", "find-pkg-prefix"):
        arity(1, 1)
        find = find_package_share if sub.name == "find-pkg-share" else find_package_prefix
        try:
            return str(find(args[0]))
        except PackageLookupError as exc:
            raise SubstitutionError(f"$({sub.name} {args[0]}): {exc}") from None
    if sub.name == "eval":
        arity(1, 2)
        return _python_expression(args[0], args[1] if len(args) == 2 else "math")
    raise SubstitutionError(
        f"unsupported substitution $({sub.name}); mtopt-launch supports: "
        + ", ".join(f"$({s})" for s in SUPPORTED)
    )


def _python_expression(expression: str, modules: str) -> str:
    """`$(eval ...)`: ros2 launch's PythonExpression (math names in scope, listed modules)."""
    scope: dict[str, object] = {}
    for name in (m.strip() for m in modules.split(",")):
        if not name:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SubstitutionError(f"$(eval): cannot import module {name!r}: {exc}") from None
        if module is math:  # ros2 keeps math's names usable without the prefix
            scope.update(vars(math))
        scope[module.__name__] = module  # as ros2 (so `os.path` is `posixpath`)
    try:
        return str(eval(expression, {}, scope))  # launch files are trusted code
    except Exception as exc:  # any failure of the user's expression
        raise SubstitutionError(
            f"$(eval {expression!r}) failed: {type(exc).__name__}: {exc}"
        ) from None


class _Parser:
    """Recursive-descent parser for the launch substitution grammar."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, problem: str) -> SubstitutionError:
        return SubstitutionError(
            f"bad substitution syntax in {self.text!r} at {self.pos}: {problem}"
        )

    def peek(self, n: int = 0) -> str:
        i = self.pos + n
        return self.text[i] if i < len(self.text) else ""

    def at_substitution(self) -> bool:
        return self.peek() == "$" and self.peek(1) == "("

    def template(self) -> list[Part]:
        parts: list[Part] = []
        buf: list[str] = []
        while self.pos < len(self.text):
            if self.at_substitution():
                if buf:
                    parts.append(Text("".join(buf)))
                    buf = []
                parts.append(self.substitution())
            elif self.peek() == "\\" and self.pos + 1 < len(self.text):
                buf.append(self.peek(1))
                self.pos += 2
            else:
                buf.append(self.peek())
                self.pos += 1
        if buf:
            parts.append(Text("".join(buf)))
        return parts

    def substitution(self) -> Substitution:
        self.pos += 2  # "$("
        start = self.pos
        if not self.peek().isalpha():
            raise self.error("expected a substitution name after '$('")
        while self.peek() and (self.peek().isalnum() or self.peek() in "_-"):
            self.pos += 1
        name = self.text[start : self.pos]
        args: list[tuple[Part, ...]] = []
        while self.peek() == " ":
            self.pos += 1
            args.append(tuple(self.argument()))
        if self.peek() != ")":
            raise self.error(f"expected ')' to close $({name}")
        self.pos += 1
        return Substitution(name, tuple(args))

    def argument(self) -> list[Part]:
        quote = self.peek()
        if quote in ("'", '"'):
            self.pos += 1
            parts = self.until(lambda c: c == quote, what=f"closing {quote}")
            self.pos += 1
            return parts
        parts = self.until(lambda c: c in " )'\"(", what="')'")
        if not parts:
            raise self.error("empty substitution argument")
        return parts

    def until(self, stop, what: str) -> list[Part]:
        parts: list[Part] = []
        buf: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.error(f"expected {what}")
            if self.at_substitution():
                if buf:
                    parts.append(Text("".join(buf)))
                    buf = []
                parts.append(self.substitution())
                continue
            c = self.peek()
            if c == "\\" and self.pos + 1 < len(self.text):
                buf.append(self.peek(1))
                self.pos += 2
                continue
            if stop(c):
                break
            buf.append(c)
            self.pos += 1
        if buf:
            parts.append(Text("".join(buf)))
        return parts
