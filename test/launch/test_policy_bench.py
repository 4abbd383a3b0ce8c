"""`python -m mtopt_policy.bench` runs a simulated cell through ROS and prints one JSON line."""

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_policy_bench_two_episodes(run_json_cli):
    result = run_json_cli("mtopt_policy.bench", "--episodes", "2", "--no-sd", timeout=280.0)
    assert result["bench"] == "mtopt_policy"
    assert result["episodes"] == 2
    assert result["bags"] == 2
    assert result["episodes_per_hour"] > 0
    assert result["cpu_cores_busy"] > 0
