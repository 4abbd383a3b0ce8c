"""Task impersonation (seed Sec. IV-B, Algorithm 1, Appendix C).

An episode collected for task T_i is turned into relabelled copies for other tasks T_k: the
same transitions, with the reward of T_k (success or failure of the final state for T_k, from
the success detector or an oracle). The impersonation function decides which tasks get a copy:

- `orig`  (f_I^orig):  only the commanded task; no sharing.
- `all`   (f_I^all):   every task.
- `skill` (f_I^skill): the tasks of the commanded task's skill.
- `skill_stochastic(ps, pf)` (f_I^skill(ps, pf), Appendix C): like `skill`, but each
  *impersonated* candidate (a task of the same skill other than the commanded one) is routed to
  training with probability ps if it is a success for that task and with probability pf if it
  is a failure, independently per candidate. The commanded task is not an impersonation and is
  always kept. `skill_stochastic(1, 1)` equals `skill`.

Labels: the given per-task outcomes are first extended with `TaskRegistry.share_labels`
(e.g. lift-carrot success => lift-any success, lift-banana failure). A task whose outcome is
still unknown is never relabelled (it gets no copy, whatever the function; that includes the
commanded task under `orig`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mtopt_core.tasks import LabelConflictError, TaskRegistry


@dataclass(frozen=True)
class Relabel:
    """One training copy of an episode: for `task`, with final outcome `success`.
    `original` marks the commanded task (not an impersonation)."""

    task: str
    success: bool
    original: bool


class Impersonation:
    """Base class: maps (commanded task, known labels) to the relabelled copies to train on."""

    name = "base"

    def __init__(self, registry: TaskRegistry, strict_labels: bool = False):
        """strict_labels: raise LabelConflictError when the labels contradict the registry's
        feasibility rules; by default (an SD can be wrong) the given labels are used as they
        are, without inferring others."""
        self.registry = registry
        self.strict_labels = strict_labels

    def candidates(self, commanded_task: str) -> Sequence[str]:
        """Tasks the episode may be relabelled for (in registry order)."""
        raise NotImplementedError

    def keep(self, relabel: Relabel, rng: np.random.Generator | None) -> bool:
        return True

    def known_labels(self, labels: Mapping[str, bool]) -> dict[str, bool]:
        """Given labels extended by the feasibility rules."""
        try:
            return self.registry.share_labels(labels)
        except LabelConflictError:
            if self.strict_labels:
                raise
            return {name: bool(v) for name, v in labels.items()}

    def __call__(
        self,
        commanded_task: str,
        labels: Mapping[str, bool],
        rng: np.random.Generator | None = None,
    ) -> list[Relabel]:
        """Relabelled copies (commanded task first, then registry order)."""
        self.registry.index(commanded_task)  # validates the name
        known = self.known_labels(labels)
        out: list[Relabel] = []
        if commanded_task in known:
            out.append(Relabel(commanded_task, known[commanded_task], True))
        for task in self.candidates(commanded_task):
            if task == commanded_task or task not in known:
                continue
            relabel = Relabel(task, known[task], False)
            if self.keep(relabel, rng):
                out.append(relabel)
        return out

    def __repr__(self) -> str:
        return self.name


class OrigImpersonation(Impersonation):
    """f_I^orig: the episode trains only its commanded task."""

    name = "orig"

    def candidates(self, commanded_task: str) -> Sequence[str]:
        return ()


class AllImpersonation(Impersonation):
    """f_I^all: the episode trains every task whose outcome is known."""

    name = "all"

    def candidates(self, commanded_task: str) -> Sequence[str]:
        return self.registry.names


class SkillImpersonation(Impersonation):
    """f_I^skill: the episode trains the tasks of its commanded task's skill."""

    name = "skill"

    def candidates(self, commanded_task: str) -> Sequence[str]:
        return self.registry.tasks_of_skill(self.registry.skill_of(commanded_task))


class StochasticSkillImpersonation(SkillImpersonation):
    """f_I^skill(ps, pf): `skill`, keeping each impersonated success with probability ps and
    each impersonated failure with probability pf (one uniform draw per candidate, in registry
    order, from the given numpy Generator). The commanded task is always kept."""

    def __init__(self, registry: TaskRegistry, ps: float, pf: float, strict_labels: bool = False):
        super().__init__(registry, strict_labels)
        for label, p in (("ps", ps), ("pf", pf)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"skill_stochastic: {label} must be in [0, 1], got {p}")
        self.ps, self.pf = float(ps), float(pf)
        self.name = f"skill_stochastic({self.ps:g}, {self.pf:g})"

    def keep(self, relabel: Relabel, rng: np.random.Generator | None) -> bool:
        if rng is None:
            raise ValueError(f"{self.name} needs a numpy Generator (rng) to draw from")
        p = self.ps if relabel.success else self.pf
        return bool(rng.random() < p)


_STOCHASTIC = re.compile(r"^skill_stochastic\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)$")


def make_impersonation(
    spec: str, registry: TaskRegistry, strict_labels: bool = False
) -> Impersonation:
    """Build an impersonation function from its name: 'orig', 'all', 'skill' or
    'skill_stochastic(ps, pf)'."""
    spec = spec.strip()
    simple = {"orig": OrigImpersonation, "all": AllImpersonation, "skill": SkillImpersonation}
    if spec in simple:
        return simple[spec](registry, strict_labels)
    m = _STOCHASTIC.match(spec)
    if m:
        try:
            ps, pf = float(m.group(1)), float(m.group(2))
        except ValueError:
            raise ValueError(f"impersonation {spec!r}: ps and pf must be numbers") from None
        return StochasticSkillImpersonation(registry, ps, pf, strict_labels)
    raise ValueError(
        f"unknown impersonation {spec!r}; expected 'orig', 'all', 'skill' or "
        "'skill_stochastic(ps, pf)'"
    )


def labels_from_probabilities(
    registry: TaskRegistry, probabilities: Sequence[float], threshold: float = 0.5
) -> dict[str, bool]:
    """Per-task success probabilities (registry order; NaN = not graded) -> known labels."""
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if probs.size != len(registry):
        raise ValueError(
            f"expected {len(registry)} per-task probabilities (one per task), got {probs.size}"
        )
    return {name: bool(p >= threshold) for name, p in zip(registry.names, probs, strict=True)
            if np.isfinite(p)}  # fmt: skip
