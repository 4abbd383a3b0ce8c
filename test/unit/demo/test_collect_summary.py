"""`mtopt-demo --collect-only`: the per-task table and its SD-vs-oracle agreement figures."""

from types import SimpleNamespace

from mtopt_demo.report import collection_table

NAMES = ("lift-any", "lift-carrot", "place-any")


def info(task, sd, oracle, aborted=False, kind="scripted_pick"):
    return SimpleNamespace(
        task=task,
        aborted=aborted,
        policy_kind=kind,
        task_names=list(NAMES),
        sd_probabilities=list(sd),
        has_oracle=True,
        oracle_success=list(oracle),
    )


def test_agreement_counts_tasks_and_episodes():
    infos = [
        info("lift-carrot", [0.9, 0.8, 0.1], [True, True, False]),  # 3/3
        info("lift-any", [0.9, 0.2, 0.6], [True, False, False]),  # 2/3: place-any wrong
    ]
    text = collection_table(infos)
    assert "| lift-carrot | 1 | 0 | scripted_pick 1 | 1/1 | 1/1 |" in text
    assert "agreement over all tasks of all episodes: 5/6 (83.3%)" in text
    assert "episodes agreeing on >= 90% of tasks: 1/2 (worst episode 67%)" in text


def test_ungraded_episodes_have_no_agreement_line():
    text = collection_table([info("lift-any", [], [True, False, False])])
    assert "not graded" in text and "agreement" not in text
