"""`python -m mtopt_experiments.compare_evals`: paired counts and the exact McNemar p over the
matched episodes of mtopt-eval outputs, pooled over pairs; other scenes are refused."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from mtopt_experiments.compare_evals import CompareError, compare
from mtopt_experiments.stats import mcnemar_exact_p

FIELDS = ("task", "episode", "scene_seed", "policy", "start_state", "steps", "success")


def write_eval(directory: Path, outcomes: str, seed0: int = 100) -> Path:
    """An mtopt-eval-shaped episodes.csv: learned and scripted rows per lift-any scene."""
    directory.mkdir(parents=True)
    with (directory / "episodes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for i, outcome in enumerate(outcomes):
            for policy, success in (("learned", outcome == "1"), ("scripted", False)):
                writer.writerow(
                    {"task": "lift-any", "episode": i, "scene_seed": seed0 + i,
                     "policy": policy, "start_state": f"s{i}", "steps": 5,
                     "success": success}
                )  # fmt: skip
    return directory


def test_pairs_pool_into_one_exact_test(tmp_path):
    a1 = write_eval(tmp_path / "a1", "110010")
    b1 = write_eval(tmp_path / "b1", "100001")
    a2 = write_eval(tmp_path / "a2", "1110", seed0=500)
    b2 = write_eval(tmp_path / "b2", "0000", seed0=500)
    one = compare([(a1, b1)])["tasks"]["lift-any"]
    assert (one["episodes"], one["a"], one["b"], one["only_a"], one["only_b"]) == (6, 3, 2, 2, 1)
    pooled = compare([(a1, b1), (a2 / "episodes.csv", b2)])["tasks"]["lift-any"]
    assert (pooled["episodes"], pooled["only_a"], pooled["only_b"]) == (10, 5, 1)
    assert pooled["mcnemar_p"] == round(mcnemar_exact_p(5, 1), 4)


def test_other_scenes_or_no_file_are_refused(tmp_path):
    a = write_eval(tmp_path / "a", "101")
    other = write_eval(tmp_path / "other", "101", seed0=7)
    with pytest.raises(CompareError, match="ran other scenes"):
        compare([(a, other)])
    with pytest.raises(CompareError, match="cannot read"):
        compare([(a, tmp_path / "missing")])
    bad = tmp_path / "bad.csv"
    bad.write_text((a / "episodes.csv").read_text().replace("lift-any,0,", "lift-any,x,", 1))
    with pytest.raises(CompareError, match="not an integer"):
        compare([(a, bad)])


def test_cli_prints_one_json_line_and_refuses_bad_input(run_json_cli, tmp_path):
    a = write_eval(tmp_path / "a", "1100")
    b = write_eval(tmp_path / "b", "0100")
    result = run_json_cli("mtopt_experiments.compare_evals", str(a), str(b))
    assert result["pairs"] == 1 and result["tasks"]["lift-any"]["only_a"] == 1
    for args, message in (([str(a)], "pair up"), ([str(a), str(tmp_path)], "cannot read")):
        refused = subprocess.run(
            [sys.executable, "-m", "mtopt_experiments.compare_evals", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
