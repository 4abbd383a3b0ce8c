"""Task impersonation (seed Sec. IV-B, Alg. 1, App. C): exact routing of constructed episodes
for orig / all / skill, binomial rates of skill_stochastic(ps, pf), label sharing."""

import math
from collections import Counter

import numpy as np
import pytest

from mtopt_core.impersonation import (
    Relabel,
    labels_from_probabilities,
    make_impersonation,
)
from mtopt_core.tasks import LabelConflictError, load_task_registry

LIFTS = ["lift-banana", "lift-bottle", "lift-sausage", "lift-milk", "lift-box", "lift-can",
         "lift-carrot"]  # fmt: skip
PLACES = ["place-bottom", "place-top-left", "place-top-right"]


@pytest.fixture(scope="module")
def registry():
    return load_task_registry()


# (commanded task, labels from the SD / oracle)
EPISODES = [
    ("lift-carrot", {"lift-carrot": True}),  # shares: lift-any S, other lifts F
    ("lift-any", {"lift-any": False}),  # shares: every specific lift F
    ("lift-banana", {}),  # nothing known
    ("place-top-left", {"place-top-left": True, "lift-any": False}),  # all 12 known
    ("lift-any", {"lift-any": True}),  # specific lifts stay unknown
]


def route(imp, episodes, rng=None):
    return [imp(task, labels, rng) for task, labels in episodes]


def test_orig_keeps_only_the_commanded_task(registry):
    out = route(make_impersonation("orig", registry), EPISODES)
    assert out == [
        [Relabel("lift-carrot", True, True)],
        [Relabel("lift-any", False, True)],
        [],
        [Relabel("place-top-left", True, True)],
        [Relabel("lift-any", True, True)],
    ]


def test_skill_routes_within_the_commanded_skill(registry):
    out = route(make_impersonation("skill", registry), EPISODES)
    assert [len(o) for o in out] == [8, 8, 0, 4, 1]
    first = {r.task: r.success for r in out[0]}
    assert first == {"lift-any": True, "lift-carrot": True, **{t: False for t in LIFTS[:6]}}
    assert out[0][0] == Relabel("lift-carrot", True, True)
    assert all(not r.original for r in out[0][1:])
    assert {r.task: r.success for r in out[1]} == {
        "lift-any": False,
        **dict.fromkeys(LIFTS, False),
    }
    assert {r.task: r.success for r in out[3]} == {
        "place-top-left": True, "place-any": True, "place-bottom": False, "place-top-right": False
    }  # fmt: skip


def test_all_routes_to_every_known_task(registry):
    out = route(make_impersonation("all", registry), EPISODES)
    assert [len(o) for o in out] == [8, 8, 0, 12, 1]
    fourth = {r.task: r.success for r in out[3]}
    assert fourth == {
        "lift-any": False, **dict.fromkeys(LIFTS, False), "place-any": True,
        "place-top-left": True, "place-bottom": False, "place-top-right": False,
    }  # fmt: skip
    totals = Counter(r.success for o in out for r in o)
    assert totals == {True: 1 + 1 + 2 + 1, False: 6 + 8 + 10}


def test_skill_stochastic_rates_are_binomial_and_original_always_kept(registry):
    ps, pf, n = 0.8, 0.25, 2000
    imp = make_impersonation("skill_stochastic(0.8, 0.25)", registry)
    rng = np.random.default_rng(0)
    outs = route(imp, [EPISODES[0]] * n, rng)  # per episode: 1 original, 1 S and 6 F candidates
    assert all(o[0] == Relabel("lift-carrot", True, True) for o in outs)
    kept_s = sum(r.success and not r.original for o in outs for r in o)
    kept_f = sum(not r.success for o in outs for r in o)
    for kept, trials, p in ((kept_s, n, ps), (kept_f, 6 * n, pf)):
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(kept - trials * p) <= 4 * sigma, (kept, trials, p)
    # Determinism for a fixed seed.
    again = route(imp, [EPISODES[0]] * n, np.random.default_rng(0))
    assert again == outs


def test_skill_stochastic_extremes_equal_skill_and_orig(registry):
    rng = np.random.default_rng(1)
    full = route(make_impersonation("skill_stochastic(1, 1)", registry), EPISODES, rng)
    assert full == route(make_impersonation("skill", registry), EPISODES)
    none = route(make_impersonation("skill_stochastic(0, 0)", registry), EPISODES, rng)
    assert none == route(make_impersonation("orig", registry), EPISODES)
    # ps = 1, pf = 0: impersonated successes only.
    only_s = make_impersonation("skill_stochastic(1.0, 0.0)", registry)(
        "lift-carrot", {"lift-carrot": True}, rng
    )
    assert only_s == [Relabel("lift-carrot", True, True), Relabel("lift-any", True, False)]


def test_conflicting_labels(registry):
    labels = {"lift-carrot": True, "lift-any": False}  # contradicts lift-carrot => lift-any
    with pytest.raises(LabelConflictError):
        make_impersonation("skill", registry, strict_labels=True)("lift-carrot", labels)
    out = make_impersonation("skill", registry)("lift-carrot", labels)
    assert out == [Relabel("lift-carrot", True, True), Relabel("lift-any", False, False)]


def test_parser_and_errors(registry):
    assert make_impersonation(" skill_stochastic( 1.0 ,0.5 ) ", registry).pf == 0.5
    for bad in ("skills", "skill_stochastic(1.0)", "skill_stochastic(2, 0.5)",
                "skill_stochastic(a, b)"):  # fmt: skip
        with pytest.raises(ValueError, match="skill_stochastic|impersonation"):
            make_impersonation(bad, registry)
    with pytest.raises(KeyError, match="lift-unicorn"):
        make_impersonation("skill", registry)("lift-unicorn", {})
    with pytest.raises(ValueError, match="rng"):
        make_impersonation("skill_stochastic(0.5, 0.5)", registry)(*EPISODES[0])


def test_labels_from_sd_probabilities(registry):
    probs = [float("nan")] * 12
    probs[registry.index("lift-carrot")] = 0.93
    probs[registry.index("place-any")] = 0.1
    assert labels_from_probabilities(registry, probs) == {"lift-carrot": True, "place-any": False}
    with pytest.raises(ValueError, match="12"):
        labels_from_probabilities(registry, [0.5] * 3)
