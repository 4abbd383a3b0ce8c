"""Privileged success oracle: ground truth per task, read from the simulator state.

For evaluation and for labelling success-detector training images only; never a policy input.
Tasks map to predicates through their registry attributes, so new lift-X / place-section tasks
added to `config/tasks.yaml` are graded without code changes:

* skill `object_acquisition`, attribute `object: X` (lift-X): an object of category X is held
  (touching both fingers, gripper commanded closed) with its centre at least `lift_height`
  above the bin floor. Without `object` (lift-any): any object.
* skill `object_manipulation`, attribute `section: S` (place-S): an object rests on plate
  section S (touching the plate, slower than `rest_speed`, centre over S) and is released
  (gripper commanded open, not touching a finger). Without `section` (place-any): any section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mtopt_core.tasks import TaskRegistry
from mtopt_sim.cell import SimCell
from mtopt_sim.scene import PLATE_SECTIONS

ACQUISITION = "object_acquisition"
MANIPULATION = "object_manipulation"


@dataclass(frozen=True)
class OracleConfig:
    """Thresholds of the success predicates."""

    lift_height: float = 0.10  # object centre above the bin floor [m]
    rest_speed: float = 0.10  # an object moving faster than this [m/s] is not resting


@dataclass(frozen=True)
class OracleResult:
    """Per-task success and what it was based on (object variant names)."""

    success: dict[str, bool]
    held: tuple[str, ...] = ()
    lifted: tuple[str, ...] = ()
    placed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # section -> objects


class SuccessOracle:
    """Grades every task of a registry on the current state of a `SimCell`."""

    def __init__(self, registry: TaskRegistry, config: OracleConfig | None = None):
        self.registry = registry
        self.config = config or OracleConfig()
        for task in registry.tasks:
            self._predicate(task)  # validate once: unknown skills/attributes fail early

    def _predicate(self, task) -> tuple[str, str | None]:
        attrs = dict(task.attributes)
        if task.skill == ACQUISITION:
            obj = attrs.pop("object", None)
            if attrs:
                raise ValueError(f"task {task.name}: unsupported attributes {sorted(attrs)}")
            return ("lift", obj)
        if task.skill == MANIPULATION:
            section = attrs.pop("section", None)
            if attrs:
                raise ValueError(f"task {task.name}: unsupported attributes {sorted(attrs)}")
            if section is not None and section not in PLATE_SECTIONS:
                raise ValueError(
                    f"task {task.name}: unknown plate section {section!r}; "
                    f"sections: {PLATE_SECTIONS}"
                )
            return ("place", section)
        raise ValueError(f"task {task.name}: the simulator cannot grade skill {task.skill!r}")

    def evaluate(self, cell: SimCell) -> OracleResult:
        """Grade all tasks on the cell's current state (call after mj_forward / a step)."""
        cfg = self.config
        contacts = cell.contacts_by_object()
        names = {i: cell.variants[i].name for i in cell.active_objects}
        held = [i for i in cell.held_objects()]
        lifted = [i for i in held if cell.object_position(i)[2] - cell.floor_z >= cfg.lift_height]
        placed: dict[str, list[int]] = {s: [] for s in PLATE_SECTIONS}
        if not cell.gripper_closed:
            for i, touching in contacts.items():
                if "plate" not in touching or touching & {"finger_left", "finger_right"}:
                    continue
                if cell.object_speed(i) > cfg.rest_speed:
                    continue
                section = cell.plate_section_of(cell.object_position(i))
                if section is not None:
                    placed[section].append(i)
        success: dict[str, bool] = {}
        for task in self.registry.tasks:
            kind, arg = self._predicate(task)
            if kind == "lift":
                success[task.name] = any(
                    arg is None or cell.variants[i].category == arg for i in lifted
                )
            else:
                sections = PLATE_SECTIONS if arg is None else (arg,)
                success[task.name] = any(placed[s] for s in sections)
        return OracleResult(
            success=success,
            held=tuple(names[i] for i in held),
            lifted=tuple(names[i] for i in lifted),
            placed={s: tuple(names[i] for i in v) for s, v in placed.items() if v},
        )
