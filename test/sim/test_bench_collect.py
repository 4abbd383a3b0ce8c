"""`python -m mtopt_sim.bench_collect` with a tiny budget prints one JSON line (the ROS graph's
figure given, so the suite does not launch it)."""


def test_bench_collect_smoke(run_json_cli):
    result = run_json_cli(
        "mtopt_sim.bench_collect", "--episodes", "4", "--workers", "2",
        "--ros-baseline-per-hour", "700", timeout=120,
    )  # fmt: skip
    assert result["episodes"] == 4 and result["workers"] == 2
    assert result["ros_episodes_per_hour"] == 700.0
    assert result["ros_baseline"].startswith("given")
    assert result["episodes_per_hour"] > 0 and result["episodes_per_hour_incl_startup"] > 0
    assert result["ratio"] == round(result["episodes_per_hour"] / 700.0, 2)
    assert result["meets_target"] == (result["ratio"] >= result["target_ratio"] == 20.0)
    assert sum(result["episodes_by_kind"].values()) == 4
