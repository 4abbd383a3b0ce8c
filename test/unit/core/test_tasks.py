"""Task registry: the 12 seed tasks, both skills, every label-sharing rule, each bad-YAML error."""

import itertools

import pytest
import yaml

from mtopt_core.tasks import (
    LabelConflictError,
    TaskRegistryError,
    default_tasks_file,
    load_task_registry,
    parse_task_registry,
)

LIFTS = [
    "lift-banana",
    "lift-bottle",
    "lift-sausage",
    "lift-milk",
    "lift-box",
    "lift-can",
    "lift-carrot",
]
PLACES = ["place-bottom", "place-top-left", "place-top-right"]


@pytest.fixture(scope="module")
def registry():
    return load_task_registry()


def test_seed_tasks_and_skills(registry):
    assert registry.names == ("lift-any", *LIFTS, "place-any", *PLACES)
    assert len(registry) == 12
    assert set(registry.skills) == {"object_acquisition", "object_manipulation"}
    assert registry.tasks_of_skill("object_acquisition") == ("lift-any", *LIFTS)
    assert registry.tasks_of_skill("object_manipulation") == ("place-any", *PLACES)
    assert registry.index("place-any") == 8
    assert registry["lift-carrot"].attributes == {"object": "carrot"}
    assert registry["place-top-left"].attributes == {"section": "top-left"}
    with pytest.raises(KeyError, match="unknown task 'lift-cloth'"):
        registry.index("lift-cloth")


@pytest.mark.parametrize("lift", LIFTS)
def test_specific_lift_success(registry, lift):
    labels = registry.share_labels({lift: True})
    expected = {"lift-any": True, lift: True} | {o: False for o in LIFTS if o != lift}
    assert labels == expected  # nothing said about place tasks


@pytest.mark.parametrize("place", PLACES)
def test_specific_place_success(registry, place):
    labels = registry.share_labels({place: True})
    assert labels == {"place-any": True, place: True} | {o: False for o in PLACES if o != place}


def test_general_failure_implies_specific_failures(registry):
    assert registry.share_labels({"lift-any": False}) == {"lift-any": False} | dict.fromkeys(
        LIFTS, False
    )
    assert registry.share_labels({"place-any": False}) == {"place-any": False} | dict.fromkeys(
        PLACES, False
    )


def test_rules_that_do_not_hold_are_not_applied(registry):
    # A general success says nothing about which object; a specific failure says nothing else.
    assert registry.share_labels({"lift-any": True}) == {"lift-any": True}
    assert registry.share_labels({"lift-carrot": False}) == {"lift-carrot": False}
    assert registry.share_labels({"place-bottom": False}) == {"place-bottom": False}


def test_skills_do_not_share_labels(registry):
    labels = registry.share_labels({"lift-can": True, "place-any": False})
    assert labels["place-bottom"] is False and labels["lift-any"] is True
    assert "place-any" in labels and len(labels) == 12


@pytest.mark.parametrize(
    "labels",
    [
        {"lift-carrot": True, "lift-any": False},
        {"lift-can": True, "lift-box": True},
        {"place-top-left": True, "place-any": False},
    ],
)
def test_contradictions_are_reported(registry, labels):
    with pytest.raises(LabelConflictError, match="contradict"):
        registry.share_labels(labels)


def test_every_implication_is_sound_for_every_single_outcome(registry):
    # Brute force over "which single object was lifted": the rules must agree with the truth.
    for lifted in [None, *LIFTS]:
        truth = {t: t == lifted for t in LIFTS} | {"lift-any": lifted is not None}
        for task, outcome in truth.items():
            inferred = registry.share_labels({task: outcome})
            assert all(truth[t] == v for t, v in inferred.items() if t in truth)


def _write(tmp_path, data):
    path = tmp_path / "tasks.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _valid():
    return {
        "skills": {"a": "skill a", "b": "skill b"},
        "tasks": [
            {"name": "t1", "skill": "a"},
            {"name": "t2", "skill": "a"},
            {"name": "t3", "skill": "b"},
        ],
        "rules": [{"generalizes": {"general": "t1", "specific": ["t2"]}}],
    }


def test_adding_a_task_is_a_yaml_edit(tmp_path):
    data = yaml.safe_load(default_tasks_file().read_text())
    data["tasks"].append({"name": "lift-cloth", "skill": "object_acquisition", "object": "cloth"})
    data["rules"][0]["generalizes"]["specific"].append("lift-cloth")
    data["rules"][1]["mutually_exclusive"].append("lift-cloth")
    registry = load_task_registry(_write(tmp_path, data))
    assert len(registry) == 13 and registry.index("lift-cloth") == 12
    assert registry.share_labels({"lift-cloth": True})["lift-carrot"] is False


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (
            lambda d: d["tasks"][1].update(skill="juggling"),
            "tasks[1].skill",
            "unknown skill 'juggling'",
        ),
        (lambda d: d["tasks"][2].update(name="t1"), "tasks[2].name", "duplicate task 't1'"),
        (lambda d: d["tasks"][0].pop("name"), "tasks[0].name", "missing or empty task name"),
        (
            lambda d: d["rules"][0]["generalizes"].update(specific=["t9"]),
            "rules[0].generalizes.specific",
            "rule names missing task 't9'",
        ),
        (
            lambda d: d["rules"].append({"mutually_exclusive": ["t2", "t8"]}),
            "rules[1].mutually_exclusive",
            "rule names missing task 't8'",
        ),
        (
            lambda d: d["rules"].append({"mutually_exclusive": ["t2"]}),
            "rules[1].mutually_exclusive",
            "at least 2 task name",
        ),
        (
            lambda d: d["rules"].append({"implies": ["t2"]}),
            "rules[1].implies",
            "unknown rule kind",
        ),
        (
            lambda d: d["rules"][0]["generalizes"].pop("general"),
            "rules[0].generalizes",
            "needs exactly the keys",
        ),
        (lambda d: d.update(skills={}), "skills", "non-empty mapping"),
        (lambda d: d.update(tasks=[]), "tasks", "non-empty list"),
        (lambda d: d.update(extra=1), "extra", "unknown key"),
    ],
)
def test_bad_files_name_file_key_and_problem(tmp_path, mutate, key, problem):
    data = _valid()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(TaskRegistryError) as info:
        load_task_registry(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "file is empty"),
        ("# nothing\n", "file is empty"),
        ("tasks: [\n", "invalid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_empty_or_unparsable_file(tmp_path, text, problem):
    path = _write(tmp_path, text)
    with pytest.raises(TaskRegistryError, match=problem) as info:
        load_task_registry(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(TaskRegistryError, match="cannot read"):
        load_task_registry(tmp_path / "nope.yaml")


def test_env_override(tmp_path, monkeypatch):
    path = _write(tmp_path, _valid())
    monkeypatch.setenv("MTOPT_TASKS_FILE", str(path))
    assert load_task_registry().names == ("t1", "t2", "t3")


def test_implications_are_deduplicated():
    data = _valid()
    data["rules"] *= 2
    registry = parse_task_registry(data)
    assert len(registry.implications) == 2
    assert len(set(itertools.chain(registry.implications))) == 2
