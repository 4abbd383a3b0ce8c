"""Task registry: the MT-Opt tasks, their skills, and the label-sharing feasibility rules.

Everything comes from `config/tasks.yaml`; adding a task is an edit of that file. The order of
tasks is significant: it is the order of the Q-network's one-hot task input and of every
per-task array in messages and bags.

Label sharing (seed Sec. XI): a known outcome for one task often fixes the outcome of others
(a lift-carrot success is a lift-any success and a lift-banana failure). The YAML states rules
in two compact kinds which the loader expands into atomic implications
``(task, outcome) => (task, outcome)``; `TaskRegistry.share_labels` applies them to a fixed point.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASKS_FILE_ENV = "MTOPT_TASKS_FILE"


class TaskRegistryError(ValueError):
    """A task file is malformed. The message names the file, the key and the problem."""

    def __init__(self, path: Path | str, key: str, problem: str):
        self.path, self.key, self.problem = str(path), key, problem
        super().__init__(f"{path}: {key}: {problem}")


class LabelConflictError(ValueError):
    """Labels contradict the feasibility rules (e.g. lift-carrot success, lift-any failure)."""


@dataclass(frozen=True)
class Task:
    name: str
    skill: str
    description: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)  # e.g. object: banana


@dataclass(frozen=True)
class Implication:
    """If `if_task` has outcome `if_success`, then `then_task` has outcome `then_success`."""

    if_task: str
    if_success: bool
    then_task: str
    then_success: bool


@dataclass(frozen=True)
class TaskRegistry:
    tasks: tuple[Task, ...]
    skills: Mapping[str, str]  # skill name -> description
    implications: tuple[Implication, ...]
    source: str = "<memory>"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self.tasks)

    def __getitem__(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(self.names)}")

    def index(self, name: str) -> int:
        """Position of the task in the one-hot encoding and in per-task arrays."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"unknown task {name!r}; known tasks: {', '.join(self.names)}"
            ) from None

    def skill_of(self, name: str) -> str:
        return self[name].skill

    def tasks_of_skill(self, skill: str) -> tuple[str, ...]:
        if skill not in self.skills:
            raise KeyError(f"unknown skill {skill!r}; known skills: {', '.join(self.skills)}")
        return tuple(t.name for t in self.tasks if t.skill == skill)

    def share_labels(self, labels: Mapping[str, bool]) -> dict[str, bool]:
        """Extend known per-task outcomes with everything the feasibility rules imply.

        Returns a new dict holding the given labels plus the implied ones. Tasks whose outcome
        cannot be inferred stay absent. Raises LabelConflictError when the given labels
        contradict the rules, and KeyError for an unknown task.
        """
        result: dict[str, bool] = {}
        for name, success in labels.items():
            self.index(name)  # validates the name
            result[name] = bool(success)
        changed = True
        while changed:
            changed = False
            for rule in self.implications:
                if result.get(rule.if_task) is not rule.if_success:
                    continue
                current = result.get(rule.then_task)
                if current is None:
                    result[rule.then_task] = rule.then_success
                    changed = True
                elif current is not rule.then_success:
                    raise LabelConflictError(
                        f"labels contradict the rules: {rule.if_task}="
                        f"{_outcome(rule.if_success)} implies {rule.then_task}="
                        f"{_outcome(rule.then_success)}, but it is {_outcome(current)}"
                    )
        return result


def _outcome(success: bool) -> str:
    return "success" if success else "failure"


def default_tasks_file() -> Path:
    """`$MTOPT_TASKS_FILE`, else `config/tasks.yaml` of the source tree this package lives in."""
    env = os.environ.get(TASKS_FILE_ENV)
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "config" / "tasks.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no tasks file found: set {TASKS_FILE_ENV} or pass the path of config/tasks.yaml"
    )


def load_task_registry(path: str | os.PathLike | None = None) -> TaskRegistry:
    """Load and validate a task file (default: `default_tasks_file()`)."""
    path = Path(path) if path is not None else default_tasks_file()
    try:
        text = path.read_text()
    except OSError as exc:
        raise TaskRegistryError(path, "<file>", f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaskRegistryError(path, "<file>", f"invalid YAML: {exc}") from exc
    return parse_task_registry(data, source=path)


def parse_task_registry(data: Any, source: Path | str = "<memory>") -> TaskRegistry:
    """Validate the parsed YAML of a task file and build the registry."""

    def fail(key: str, problem: str) -> TaskRegistryError:
        return TaskRegistryError(source, key, problem)

    if data is None or data == {}:
        raise fail("<file>", "file is empty; expected the keys 'skills', 'tasks' and 'rules'")
    if not isinstance(data, dict):
        raise fail("<file>", f"expected a mapping at the top level, got {type(data).__name__}")
    unknown = set(data) - {"skills", "tasks", "rules"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key; expected 'skills', 'tasks', 'rules'")

    skills = data.get("skills")
    if not isinstance(skills, dict) or not skills:
        raise fail("skills", "must be a non-empty mapping of skill name -> description")
    for name, desc in skills.items():
        if not isinstance(name, str) or not name:
            raise fail(f"skills.{name}", "skill names must be non-empty strings")
        if desc is not None and not isinstance(desc, str):
            raise fail(f"skills.{name}", "description must be a string")

    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise fail("tasks", "must be a non-empty list of tasks")
    tasks: list[Task] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw_tasks):
        key = f"tasks[{i}]"
        if not isinstance(entry, dict):
            raise fail(key, "each task must be a mapping with 'name' and 'skill'")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise fail(f"{key}.name", "missing or empty task name")
        if name in seen:
            raise fail(f"{key}.name", f"duplicate task {name!r}")
        seen.add(name)
        skill = entry.get("skill")
        if not isinstance(skill, str) or skill not in skills:
            raise fail(
                f"{key}.skill",
                f"unknown skill {skill!r} for task {name!r}; known skills: {', '.join(skills)}",
            )
        description = entry.get("description", "") or ""
        if not isinstance(description, str):
            raise fail(f"{key}.description", "must be a string")
        attributes = {k: v for k, v in entry.items() if k not in ("name", "skill", "description")}
        tasks.append(Task(name, skill, description, attributes))

    raw_rules = data.get("rules", []) or []
    if not isinstance(raw_rules, list):
        raise fail("rules", "must be a list")
    implications: list[Implication] = []
    for i, rule in enumerate(raw_rules):
        implications.extend(_expand_rule(rule, f"rules[{i}]", seen, fail))

    return TaskRegistry(
        tasks=tuple(tasks),
        skills={k: v or "" for k, v in skills.items()},
        implications=tuple(dict.fromkeys(implications)),  # dedupe, keep order
        source=str(source),
    )


def _expand_rule(rule: Any, key: str, known: set[str], fail) -> Iterable[Implication]:
    def check_names(names: Any, subkey: str, minimum: int) -> list[str]:
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or len(names) < minimum:
            raise fail(subkey, f"must list at least {minimum} task name(s)")
        for name in names:
            if not isinstance(name, str) or name not in known:
                raise fail(subkey, f"rule names missing task {name!r}")
        if len(set(names)) != len(names):
            raise fail(subkey, "lists a task twice")
        return names

    if not isinstance(rule, dict) or len(rule) != 1:
        raise fail(
            key,
            "each rule must be a mapping with exactly one of "
            "'generalizes' or 'mutually_exclusive'",
        )
    ((kind, body),) = rule.items()
    if kind == "generalizes":
        if not isinstance(body, dict) or set(body) != {"general", "specific"}:
            raise fail(f"{key}.generalizes", "needs exactly the keys 'general' and 'specific'")
        general_names = check_names(body["general"], f"{key}.generalizes.general", 1)
        if len(general_names) != 1:
            raise fail(f"{key}.generalizes.general", "must name exactly one task")
        (general,) = general_names
        specific = check_names(body["specific"], f"{key}.generalizes.specific", 1)
        if general in specific:
            raise fail(f"{key}.generalizes", f"{general!r} cannot generalize itself")
        for task in specific:
            yield Implication(task, True, general, True)
            yield Implication(general, False, task, False)
    elif kind == "mutually_exclusive":
        names = check_names(body, f"{key}.mutually_exclusive", 2)
        for a in names:
            for b in names:
                if a != b:
                    yield Implication(a, True, b, False)
    else:
        raise fail(
            f"{key}.{kind}", "unknown rule kind; expected 'generalizes' or 'mutually_exclusive'"
        )
