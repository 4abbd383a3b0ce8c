"""`mtopt-reliability` at CI size: one simulated cell with respawning nodes, the policy, the
logger and the simulated cell SIGKILLed in turn (a recording cut mid-episode among them); the
run goes on, every complete bag is readable exactly once, the campaign exits 0. (The
documented run kills every node type: docs/reliability.md.)"""

import json
import subprocess
import sys

import pytest

from mtopt_experiments.reliability import audit_episodes, memory_growth

pytestmark = [pytest.mark.ros, pytest.mark.slow]

#: CI size: the episode driver, the bag writer and the simulated hardware (cameras, arm, bin)
#: crash; the documented run kills every node type (docs/reliability.md).
KILLED = ("policy", "logger", "sim_cell")


def test_every_node_type_killed_in_turn_and_nothing_is_lost(tmp_path):
    out = tmp_path / "campaign"
    proc = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.reliability", "--out", str(out),
         "--cells", "1", "--duration", "60", "--fault-every", "8", "--episode-silence", "5",
         "--settle", "12", "--kill", *KILLED, "--warmup", "10", "--sample-every", "2"],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout + proc.stderr[-3000:]
    result = json.loads(lines[0])
    assert proc.returncode == 0, (result, proc.stderr[-3000:])
    assert result["faults"] >= len(KILLED), result
    assert result["faults_survived"] == result["faults"], result
    assert result["unreadable_bags"] == 0 and result["duplicate_episodes"] == 0, result
    assert result["episodes"] >= result["faults"], result
    report = (out / "report.md").read_text()
    for node in KILLED:
        assert f"/cell0/{node}" in report
    assert (out / "memory.csv").read_text().count("\n") > 10


def test_the_audit_finds_damaged_and_cut_recordings(tmp_path):
    assert audit_episodes(tmp_path / "none").bags == 0
    (tmp_path / "cell0_x_0001.part").mkdir()
    broken = tmp_path / "cell0_x_0002"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not a bag")
    audit = audit_episodes(tmp_path)
    assert audit.part_leftovers == 1 and audit.bags == 1 and len(audit.unreadable) == 1


def test_memory_growth_is_a_slope_after_warm_up():
    samples = [(t, "/cell0/policy", 7, 100.0 + (t / 3600.0) * 5.0) for t in range(0, 601, 10)]
    samples += [(t, "/cell0/policy", 8, 50.0) for t in range(0, 601, 10)]  # a short-lived pid
    growth = memory_growth(samples, warmup_s=60)
    expected = 100.0 * 5.0 / 100.4  # 5 MB/h on a mean of about 100.4 MB
    assert growth["/cell0/policy"]["growth_pct_per_h"] == pytest.approx(expected, rel=0.05)
