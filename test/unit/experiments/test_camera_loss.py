"""Camera message loss as `mtopt-reliability` counts it (`mtopt_experiments.graph_monitor`):
frames missing from a stream's stamp sequence, apart from publisher restarts (a killed sim_cell)
and the simulator's respawn pauses; the header stamp read from raw CDR bytes; the sim_cell's
respawn log line read back; the learner's ledger audit and the campaign's option checks."""

from __future__ import annotations

import json

import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from mtopt_experiments.graph_monitor import (
    StreamLoss,
    cdr_stamp,
    sim_pauses,
    stream_loss,
)
from mtopt_experiments.reliability import (
    CampaignConfig,
    KillOrder,
    camera_summary,
    learner_audit,
)
from mtopt_sim.sim_cell_node import camera_image_msg, respawn_log_line

P = 0.05  # 20 Hz


def frames(stamps, start_s=0.0, dt=0.01):
    """(stamp, receive time) pairs, received dt apart."""
    return [(s, start_s + k * dt) for k, s in enumerate(stamps)]


def slots(first, last):
    """Frame stamps of slots first..last, each a little after its slot (physics steps)."""
    return [round(k * P + 0.0007 * (k % 3), 4) for k in range(first, last + 1)]


def test_an_unbroken_stream_loses_nothing():
    loss = stream_loss(frames(slots(10, 109)), P)
    assert (loss.received, loss.lost, loss.gaps, loss.restarts, loss.pauses) == (100, 0, 0, 0, 0)
    assert loss.loss_pct == 0.0


def test_gaps_count_the_missing_slots():
    stamps = slots(0, 9) + slots(12, 20) + slots(26, 30)  # 10, 11 and 21..25 missing
    loss = stream_loss(frames(stamps), P)
    assert loss.lost == 7 and loss.gaps == 2 and loss.max_gap == 5
    assert loss.received == len(stamps)
    assert loss.loss_pct == pytest.approx(100 * 7 / (len(stamps) + 7), abs=1e-3)
    assert [e[0] for e in loss.events] == ["lost", "lost"]
    assert [e[5] for e in loss.events] == [2, 5]


def test_a_restarted_publisher_is_not_loss():
    # The killed sim_cell's clock was at 42 s; the new process starts at 1.2 s (after its
    # first respawn) with a new stream.
    before = frames(slots(800, 840), start_s=10.0)
    after = frames([1.202 + k * P for k in range(30)], start_s=14.0)
    loss = stream_loss(before + after, P)
    assert loss.restarts == 1 and loss.lost == 0
    assert loss.restart_outage_s == pytest.approx(14.0 - before[-1][1], abs=1e-3)
    # A kill between two receptions marks a forward gap as a restart too ...
    forward = frames(slots(0, 10)) + [(60.0, 5.0), (60.05, 5.01)]
    assert stream_loss(forward, P, kills=[2.0]).restarts == 1
    assert stream_loss(forward, P).lost == round((60.0 - slots(0, 10)[-1]) / P) - 1
    # One kill, two gaps (seen in a campaign): the dying process's last frames arrive after
    # the kill across a gap, then the new process's stamps go back: one restart.
    dying = frames(slots(0, 10), start_s=1.9) + [(0.65, 2.05), (0.7, 2.06)]
    restarted = dying + frames([0.1 + k * P for k in range(10)], start_s=6.0)
    loss = stream_loss(restarted, P, kills=[2.0])
    assert loss.restarts == 1 and loss.lost == 0
    assert [e[0] for e in loss.events] == ["restart", "restart"]
    # A stamp going back without any kill is a restart of its own.
    assert stream_loss(restarted, P).restarts == 1
    # ... but not frames still arriving after the kill (they were on their way).
    late = frames(slots(0, 10), start_s=1.95)
    loss = stream_loss(late, P, kills=[2.0])
    assert loss.restarts == 0 and loss.lost == 0


def test_a_respawn_pause_is_not_loss_but_a_gap_beside_it_is():
    stamps = slots(0, 40) + [3.252 + k * P for k in range(20)]  # sim time 2.03 -> 3.25: settle
    pauses = [(2.031, 3.231)]
    loss = stream_loss(frames(stamps), P, pauses=pauses)
    assert loss.pauses == 1 and loss.lost == 0
    assert stream_loss(frames(stamps), P).lost > 20  # without the log line it would be loss
    other = slots(0, 9) + slots(11, 40) + [3.252 + k * P for k in range(20)]
    loss = stream_loss(frames(other), P, pauses=pauses)
    assert loss.pauses == 1 and loss.lost == 1


def test_bad_period_and_empty_streams():
    with pytest.raises(ValueError, match="period_s"):
        stream_loss([], 0.0)
    empty = stream_loss([], P)
    assert empty.received == 0 and empty.loss_pct is None


def test_stream_losses_add_up_and_summarize():
    a = stream_loss(frames(slots(0, 9) + slots(12, 20)), P)
    b = stream_loss(frames(slots(0, 4) + slots(9, 20)), P)
    total = StreamLoss()
    total.add(a)
    total.add(b)
    assert total.lost == 6 and total.max_gap == 4 and total.received == a.received + b.received
    summary = camera_summary({"sensor": {"/c/x": a, "/c/y": b}, "deep": {"/c/x": a}}, P, 200)
    assert summary["sensor"]["total"]["lost"] == 6
    assert summary["deep"]["total"]["lost"] == 2
    assert summary["depth"] == {"sensor": 5, "deep": 200}
    assert "events" not in summary["sensor"]["per_stream"]["/c/x"]
    json.dumps(summary)


def test_the_stamp_is_read_from_the_raw_message():
    import numpy as np

    msg = camera_image_msg(np.zeros((8, 8, 3), np.uint8), "overhead", 1234.56789)
    assert cdr_stamp(serialize_message(msg)) == pytest.approx(1234.56789, abs=1e-6)
    assert cdr_stamp(serialize_message(Image())) == 0.0


def test_the_sim_cells_respawn_line_is_read_back():
    line = respawn_log_line(41.95321, 43.1532, ["can_0", "box_1"])
    log = (
        "1796386027.513 [cell0/sim_cell] [INFO] [1796386027.511] [cell0.sim_cell]: " + line + "\n"
        "1796386027.600 [cell1/collector] [INFO] [1796386027.6] [cell1.collector]: " + line + "\n"
        "1796386028.000 [cell1/sim_cell] [INFO] [1796386028.0] [cell1.sim_cell]: "
        + respawn_log_line(7.0, 8.2, [])
        + "\n"
    )
    assert sim_pauses(log) == {"cell0": [(41.9532, 43.1532)], "cell1": [(7.0, 8.2)]}


def test_the_learner_ledger_audit(tmp_path):
    episodes, learner = tmp_path / "episodes", tmp_path / "learner"
    for name in ("cell0_a_00001", "cell0_a_00002", "cell0_a_00003"):
        (episodes / name).mkdir(parents=True)
        (episodes / name / "metadata.yaml").write_text("x")
    state = learner / "logreplay"
    (state / "quarantine" / "cell0_a_00009").mkdir(parents=True)
    lines = [
        {"name": "cell0_a_00001", "outcome": "ingested"},
        {"name": "cell0_a_00002", "outcome": "skipped"},
        {"name": "cell0_a_00001", "outcome": "ingested"},
    ]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"name": "cell0_a_000'
    (state / "ledger.jsonl").write_text(text)
    audit = learner_audit(learner, episodes, announced=4)
    assert audit["ledger_duplicates"] == 1 and audit["ledger_torn_lines"] == 1
    assert audit["ledger_bags"] == 2 and audit["bags_not_yet_seen"] == 1
    assert audit["quarantined"] == 1 and audit["weights_announced"] == 4
    assert audit["ledger_outcomes"] == {"ingested": 2, "skipped": 1}
    assert audit["last_checkpoint_step"] is None


def test_campaign_options_for_the_sd_and_the_learner(tmp_path):
    base = CampaignConfig(out=tmp_path)
    assert "sd" not in base.kill_order() and "learner" not in base.kill_order()
    full = CampaignConfig(out=tmp_path, learner=True, sd=True)
    assert full.kill_order()[-2:] == ("sd", "learner")
    full.validate()
    for config, message in [
        (CampaignConfig(out=tmp_path, kill=("sd",)), "needs --sd"),
        (CampaignConfig(out=tmp_path, kill=("learner",)), "needs --learner"),
        (CampaignConfig(out=tmp_path, kill=("planner",)), "unknown node"),
        (CampaignConfig(out=tmp_path, sd_checkpoint=tmp_path / "none.ckpt"), "no such file"),
    ]:
        with pytest.raises(ValueError, match=message):
            config.validate()


def test_a_victim_not_up_at_its_turn_is_owed_the_next_fault():
    order = KillOrder(["/cell0/sd", "/cell0/policy", "/learner"])
    up = {"/cell0/sd", "/cell0/policy"}  # the learner has no checkpoint yet
    picks = [order.next(up.__contains__) for _ in range(3)]
    assert picks == ["/cell0/sd", "/cell0/policy", "/cell0/sd"]
    up.add("/learner")
    assert order.next(up.__contains__) == "/learner"  # owed: before the turn goes on
    assert [order.next(up.__contains__) for _ in range(3)] == [
        "/cell0/policy",
        "/learner",
        "/cell0/sd",
    ]
    assert KillOrder(["/a"]).next(set().__contains__) is None
