"""`python -m mtopt_sim.bench --quick` runs and prints one JSON line."""


def test_sim_bench_quick(run_json_cli):
    result = run_json_cli("mtopt_sim.bench", "--quick")
    assert result["quick"] is True
    assert set(result["render_ms_per_frame"]) == {"64", "128", "472"}
    assert all(ms > 0 for ms in result["render_ms_per_frame"].values())
    assert result["episodes_per_s_1_process_64px"] > 0
    assert result["episodes_per_s_2_workers_spawn"] > 0
