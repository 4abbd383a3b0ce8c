"""`python -m mtopt_bridge.bench` runs both executors over DDS and prints one JSON line."""

import pytest

pytestmark = pytest.mark.ros


def test_bridge_bench_short(run_json_cli):
    result = run_json_cli("mtopt_bridge.bench", "--seconds", "0.5")
    assert result["bench"] == "mtopt_bridge.executors"
    # Our executor must deliver the topic; the ratio compares it with rclpy's in the same run.
    assert result["mtopt_bridge"]["delivered_hz"] > 0.5 * result["rate_hz"]
    assert result["delivered_ratio"] > 0
