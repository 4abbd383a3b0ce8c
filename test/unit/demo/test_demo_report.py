"""The report of `python -m mtopt_demo` (stage 4) over synthetic EpisodeInfos: who acted
decides the column, the commanded task's oracle label the cell, lift-any counts over lift
episodes; demo.png and summary.md are written. (test_cli.py runs the command itself.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mtopt_core.tasks import load_task_registry
from mtopt_demo.episodes import (
    STAGE1_RANDOM,
    STAGE1_SCRIPTED,
    STAGE3_LEARNED,
    oracle_success,
    policy_group,
)
from mtopt_demo.report import (
    StageResult,
    build_report,
    format_tables,
    sd_table,
    sd_verdict,
    write_report,
)

REGISTRY = load_task_registry()
_counter = iter(range(10_000))


def info(task, kind, successes=(), version=-1, aborted=False, oracle=True, steps=4, sd=None):
    """An EpisodeInfo-like record; `successes` are the tasks the oracle says succeeded, `sd`
    those the SD says succeeded (None: no SD graded it)."""
    k = next(_counter)
    return SimpleNamespace(
        episode_id=f"ep{k:05d}",
        start_time=SimpleNamespace(sec=1000 + k, nanosec=0),
        task=task,
        policy_kind=kind,
        weights_version=version,
        epsilon=0.1 if kind == "cem" else 1.0,
        aborted=aborted,
        steps=steps,
        task_names=list(REGISTRY.names),
        has_oracle=oracle,
        oracle_success=[n in successes for n in REGISTRY.names] if oracle else [],
        sd_probabilities=[] if sd is None else [0.9 if n in sd else 0.1 for n in REGISTRY.names],
    )


def lifted(obj):
    return ("lift-any", f"lift-{obj}")


@pytest.fixture
def episodes():
    stage1 = [
        info("lift-any", "scripted_pick", lifted("can")),
        info("lift-any", "scripted_pick"),
        info("lift-banana", "scripted_pick", lifted("carrot")),  # wrong object: lift-any only
        info("lift-banana", "scripted_pick", lifted("banana")),
        info("place-any", "scripted_place", ("place-any", "place-bottom")),
        info("lift-any", "random"),
        info("lift-box", "random", lifted("box")),
        info("lift-can", "random", aborted=True),
        info("lift-milk", "random", oracle=False),  # ungraded: counted, not graded
    ]
    stage3 = [
        info("lift-any", "random"),  # before the weights arrived
        info("lift-any", "cem", lifted("milk"), version=600, steps=10),
        info("lift-any", "cem", version=600, steps=1),
        info("lift-any", "cem", version=600, steps=1),
        info("lift-can", "cem", lifted("bottle"), version=600, steps=2),
    ]
    return stage1, stage3


def test_groups_and_oracle_lookup():
    assert policy_group(info("lift-any", "scripted_pick"), 1) == STAGE1_SCRIPTED
    assert policy_group(info("lift-any", "random"), 1) == STAGE1_RANDOM
    assert policy_group(info("lift-any", "cem", version=3), 3) == STAGE3_LEARNED
    assert policy_group(info("lift-any", "random"), 3) == "stage 3 random"
    e = info("lift-banana", "random", lifted("banana"))
    assert oracle_success(e) is True and oracle_success(e, "lift-can") is False
    assert oracle_success(info("lift-any", "random", oracle=False)) is None


def test_table_numbers(episodes):
    stage1, stage3 = episodes
    report = build_report(stage1, stage3, REGISTRY)
    assert report.groups == [STAGE1_SCRIPTED, STAGE1_RANDOM, STAGE3_LEARNED, "stage 3 random"]
    scripted, rand = report.by_task[STAGE1_SCRIPTED], report.by_task[STAGE1_RANDOM]
    learned = report.by_task[STAGE3_LEARNED]
    assert (scripted["lift-any"].successes, scripted["lift-any"].graded) == (1, 2)
    assert (scripted["lift-banana"].successes, scripted["lift-banana"].graded) == (1, 2)
    assert (scripted["place-any"].successes, scripted["place-any"].graded) == (1, 1)
    assert (rand["lift-milk"].episodes, rand["lift-milk"].graded) == (1, 0)
    assert rand["lift-can"].aborted == 1 and rand["lift-can"].successes == 0
    assert (learned["lift-any"].successes, learned["lift-any"].graded) == (1, 3)
    assert (learned["lift-can"].successes, learned["lift-can"].graded) == (0, 1)
    o = report.overall
    assert (o[STAGE1_SCRIPTED].successes, o[STAGE1_SCRIPTED].graded) == (3, 5)
    assert (o[STAGE1_RANDOM].successes, o[STAGE1_RANDOM].graded) == (1, 3)
    assert (o[STAGE3_LEARNED].successes, o[STAGE3_LEARNED].graded) == (1, 4)
    # any object lifted, over lift-task episodes (the place episode does not count)
    lift = report.lift
    assert (lift[STAGE1_SCRIPTED].successes, lift[STAGE1_SCRIPTED].graded) == (3, 4)
    assert (lift[STAGE3_LEARNED].successes, lift[STAGE3_LEARNED].graded) == (2, 4)
    assert (lift["stage 3 random"].successes, lift["stage 3 random"].graded) == (0, 1)
    # rows in registry order, only tasks that ran
    assert report.tasks == [
        "lift-any", "lift-banana", "lift-milk", "lift-box", "lift-can", "place-any"
    ]  # fmt: skip

    table = format_tables(report)
    assert table.splitlines()[0] == (
        f"| task | {STAGE1_SCRIPTED} | {STAGE1_RANDOM} | {STAGE3_LEARNED} | stage 3 random |"
    )
    assert "| lift-any | 1/2 (50%) | 0/1 (0%) | 1/3 (33%) | 0/1 (0%) |" in table
    assert "| lift-milk | - | ungraded (1) | - | - |" in table
    assert "| **all tasks** | 3/5 (60%) | 1/3 (33%) | 1/4 (25%) | 0/1 (0%) |" in table
    assert (
        "| **lift-any achieved in lift episodes** | 3/4 (75%) | 1/3 (33%) | 2/4 (50%) |" in table
    )
    assert "| aborted episodes | 0 | 1 | 0 | 0 |" in table
    assert "| mean policy steps per episode | 4.0 | 4.0 | 3.5 | 4.0 |" in table


def test_writes_png_and_summary(episodes, tmp_path):
    stage1, stage3 = episodes
    stages = [StageResult("1 collect", 300.0, "9 episodes"), StageResult("2 learn", 90.0)]
    report, text = write_report(tmp_path, stage1, stage3, REGISTRY, stages, 500.0, ["a note"])
    png = tmp_path / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "summary.md").read_text() == text
    assert "| 1 collect | 300 | 9 episodes |" in text and "| **total** | 500 | |" in text
    assert format_tables(report) in text and "- a note" in text


def test_report_without_stage3_episodes(tmp_path):
    """A plot and table still come out when one side has no episodes (no crash on empties)."""
    _, text = write_report(tmp_path, [info("lift-any", "random")], [], REGISTRY)
    assert (tmp_path / "demo.png").is_file()
    assert "| lift-any | - | 0/1 (0%) | - |" in text


def test_report_with_stage3_only(tmp_path):
    """`--weights` skips stage 1: the report shows the learned column alone."""
    learned = [
        info("lift-any", "cem", ("lift-any",), version=7),
        info("lift-any", "cem", version=7),
    ]
    _, text = write_report(tmp_path, [], learned, REGISTRY)
    assert (tmp_path / "demo.png").is_file()
    assert "| lift-any | - | - | 1/2 (50%) |" in text


def test_no_sd_section_without_sd_grades(episodes, tmp_path):
    stage1, stage3 = episodes
    assert sd_table(build_report(stage1, stage3, REGISTRY)) == ""
    _, text = write_report(tmp_path, stage1, stage3, REGISTRY)
    assert "## Success detector" not in text


def test_sd_verdicts_beside_the_oracle(tmp_path):
    n = len(REGISTRY.names)
    stage1 = [
        info("lift-any", "scripted_pick", lifted("can"), sd=lifted("can")),  # agrees
        info("lift-any", "scripted_pick", sd=lifted("can")),  # false positive on 2 tasks
        info("place-any", "scripted_place", ("place-any",), sd=("place-any",)),
    ]
    stage3 = [
        info("lift-any", "cem", lifted("milk"), version=1, sd=()),  # misses 2 tasks
        info("lift-any", "cem", version=1),  # no SD: not counted
    ]
    assert sd_verdict(stage1[0]) is True and sd_verdict(stage3[1]) is None
    table = sd_table(build_report(stage1, stage3, REGISTRY))
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2] == (
        f"| {STAGE1_SCRIPTED} | 3 | 2 | 1 | 2/3 | {3 * n - 2}/{3 * n} "
        f"({100.0 * (3 * n - 2) / (3 * n):.1f}%) |"
    )
    assert lines[3] == (
        f"| {STAGE3_LEARNED} | 1 | 0 | 1 | 0/1 | {n - 2}/{n} ({100.0 * (n - 2) / n:.1f}%) |"
    )
    _, text = write_report(tmp_path, stage1, stage3, REGISTRY)
    assert "## Success detector" in text and table in text
