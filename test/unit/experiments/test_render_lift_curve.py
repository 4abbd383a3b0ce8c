"""scripts/render_lift_curve.py: draws the lift-any curve from its CSV of measured points, and
refuses a missing or malformed CSV with a message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "render_lift_curve.py"
HEADER = (
    "series,episodes,on_policy_episodes,steps,learner_seed,eval_episodes,learned,scripted,"
    "learned_ci_low,learned_ci_high,evaluation\n"
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_draws_the_points_of_the_csv(tmp_path):
    points = tmp_path / "curve.csv"
    points.write_text(
        HEADER
        + "round 0,6000,0,6000,0,300,140,80,0.41,0.52,runs/a\n"
        + "round 0,12000,0,12000,0,300,145,80,0.43,0.54,runs/b\n"
        + "recipe,18000,6000,18000,1,300,185,80,0.56,0.67,runs/c\n"
    )
    picture = tmp_path / "out" / "curve.png"
    result = _run("--csv", str(points), "--png", str(picture))
    assert result.returncode == 0, result.stderr
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_refuses_a_missing_or_malformed_csv(tmp_path):
    result = _run("--csv", str(tmp_path / "none.csv"), "--png", str(tmp_path / "p.png"))
    assert result.returncode != 0 and "--from-runs writes it" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("series,episodes\nx,1\n")
    result = _run("--csv", str(bad), "--png", str(tmp_path / "p.png"))
    assert result.returncode != 0 and "missing" in result.stderr
    assert not (tmp_path / "p.png").exists()


def test_from_runs_keeps_the_rows_of_evaluations_this_machine_lacks(tmp_path):
    # runs/ of a fresh clone holds none of the POINTS' evaluations: their CSV rows stay.
    points = tmp_path / "curve.csv"
    row = "one round 0 per size,6000,0,6000,0,300,140,80,0.41,0.52,runs/s42/eval_decay_s0\n"
    points.write_text(HEADER + row)
    result = _run("--from-runs", "--csv", str(points), "--png", str(tmp_path / "p.png"))
    assert result.returncode == 0, result.stderr
    assert points.read_text().startswith(HEADER + row)  # the first of the POINTS, kept
    assert "no row in the CSV" in result.stderr  # the other points: nothing to keep
