"""The kinematics benchmark CLI prints one JSON line with plausible numbers."""

import json

from mtopt_iiwa import bench


def test_bench_quick_prints_one_json_line(capsys):
    bench.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["samples"] == 50
    assert 0 < result["ik_ms_p50"] <= result["ik_ms_p95"]
    assert result["plan_target_error_mm_max"] < 1.0  # planned steps land sub-mm
    assert 0.0 <= result["clamped_fraction"] < 0.5
