"""`python -m mtopt_core.bench --quick` runs and prints one JSON line with its ratios."""


def test_core_bench_quick(run_json_cli):
    result = run_json_cli("mtopt_core.bench", "--quick")
    assert result["bench"] == "mtopt_core"
    # The trunk broadcast is the point of the benchmark: it must beat rerunning the trunk.
    assert result["cem_speedup_broadcast_vs_naive"] > 1.0
    assert result["train_steps_per_s"] > 0
    assert result["replay_transitions"] > 0 and result["replay_bytes_per_transition"] > 0
