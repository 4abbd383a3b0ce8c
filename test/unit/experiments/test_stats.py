"""The shared statistics: Wilson intervals and the exact McNemar test of paired outcomes."""

import pytest

from mtopt_experiments import stats


def test_wilson_interval_brackets_the_rate():
    lo, hi = stats.wilson_interval(20, 100)
    assert lo < 0.2 < hi and hi - lo < 0.17
    assert stats.wilson_interval(0, 50)[0] == 0.0
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_paired_comparison_counts_discordant_episodes_and_tests_them():
    result = stats.paired_comparison("1100101", "1011000")
    assert (result["only_learned"], result["only_scripted"]) == (3, 2)
    assert result["mcnemar_p"] == 1.0  # 3 vs 2 of 5 discordant pairs: no evidence either way
    # 50 vs 34 discordant pairs (the README's first 200-scene set): p = 0.10
    learned, scripted = "1" * 50 + "0" * 34 + "1" * 10, "0" * 50 + "1" * 34 + "1" * 10
    assert stats.paired_comparison(learned, scripted)["mcnemar_p"] == pytest.approx(0.1011)
    assert stats.paired_comparison(scripted, learned)["mcnemar_p"] == pytest.approx(0.1011)
    assert stats.paired_comparison("", "")["mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_comparison("10", "1")


def test_mcnemar_exact_p_matches_the_binomial_test():
    # 0 vs 6 discordant pairs: 2 * (1/2)^6 = 0.03125
    assert stats.mcnemar_exact_p(0, 6) == pytest.approx(0.03125)
    assert stats.mcnemar_exact_p(6, 0) == pytest.approx(0.03125)
    # 1 vs 9: 2 * (1 + 10) / 1024
    assert stats.mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact_p(0, 0) == 1.0 and stats.mcnemar_exact_p(5, 5) == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        stats.mcnemar_exact_p(-1, 2)


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError, match="successes <= n"):
        stats.wilson_interval(5, 3)
    lo, hi = stats.wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75  # all successes: the interval still has width
