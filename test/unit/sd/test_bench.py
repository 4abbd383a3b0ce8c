"""`python -m mtopt_sd.bench --quick` runs and prints one JSON line with its ratios."""


def test_sd_bench_quick(run_json_cli):
    result = run_json_cli("mtopt_sd.bench", "--quick")
    assert result["bench"] == "mtopt_sd"
    assert 0 < result["grade_ms_p50"] <= result["grade_ms_p90"]
    assert result["train_examples_per_s"] > 0
    assert result["augment_cost_ratio"] > 0 and result["augment_vectorised_speedup"] > 0
