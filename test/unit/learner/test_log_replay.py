"""LogReplay: ingest in name order, durable ledger, restore after restart, quarantine."""

import json
import os

import numpy as np
import pytest

from mtopt_learner.log_replay import LogReplay, LogReplayConfig

LIFT_OK = {"lift-carrot": True, "lift-banana": False}


def make(tmp_path, **kw) -> LogReplay:
    cfg = dict(bag_dir=tmp_path / "bags", state_dir=tmp_path / "state",
               impersonation="skill_stochastic(1, 0.5)", seed=3)  # fmt: skip
    cfg.update(kw)
    return LogReplay(LogReplayConfig(**cfg))


def ledger_lines(tmp_path):
    return (tmp_path / "state" / "ledger.jsonl").read_text().splitlines()


def sample_signature(replay: LogReplay):
    batch = replay.buffer.sample(64, np.random.default_rng(7))
    return batch.image.tobytes(), batch.task.tolist(), batch.reward.tolist()


def test_ingests_new_bags_once_and_restores_after_restart(tmp_path, write_bag):
    bags = tmp_path / "bags"
    for i, task in enumerate(("lift-carrot", "lift-any", "place-any")):
        write_bag(bags, f"ep{i}", task=task, seed=i, success={task: i != 1})
    write_bag(bags, "ep9", seed=9)
    os.rename(bags / "ep9", bags / "ep9.part")  # still being written: never looked at

    first = make(tmp_path)
    report = first.poll()
    assert report.ingested == ["ep0", "ep1", "ep2"]
    assert report.skipped == report.quarantined == [] and report.restored == 0
    assert first.buffer.num_episodes == 3 and first.buffer.num_transitions == 9
    assert first.ingested_total == first.new_this_run == 3
    lines = [json.loads(x) for x in ledger_lines(tmp_path)]
    assert [(e["name"], e["outcome"], e["steps"]) for e in lines] == [
        ("ep0", "ingested", 3), ("ep1", "ingested", 3), ("ep2", "ingested", 3)
    ]  # fmt: skip
    sizes = report.buffer_sizes
    assert sizes["lift-carrot"]["success_episodes"] == 1
    assert sizes["place-any"]["success_episodes"] == 1
    assert first.poll().ingested == []  # nothing new: nothing counted twice
    assert first.buffer.num_episodes == 3

    # a restarted learner: nothing new is counted, but the replay has its data back
    second = make(tmp_path)
    report2 = second.poll()
    assert report2.ingested == [] and report2.restored == 3
    assert second.new_this_run == 0 and second.ingested_total == 3
    assert report2.buffer_sizes == sizes
    assert second.buffer.nbytes == first.buffer.nbytes
    # same relabelled copies (stochastic impersonation draws per bag), same transitions
    assert sample_signature(second) == sample_signature(first)
    assert len(ledger_lines(tmp_path)) == 3

    write_bag(bags, "ep3", task="lift-any", seed=3)
    report3 = second.poll()
    assert report3.ingested == ["ep3"]
    assert second.new_this_run == 1 and second.ingested_total == 4
    assert second.buffer.num_episodes == 4


def test_truncated_bag_is_quarantined_once_and_the_others_ingested(tmp_path, write_bag, truncate):
    bags = tmp_path / "bags"
    for name in ("a", "b", "c"):
        write_bag(bags, name, task="lift-carrot", success=LIFT_OK)
    truncate(bags / "b")
    replay = make(tmp_path)
    report = replay.poll()
    assert report.ingested == ["a", "c"]
    assert [name for name, _ in report.quarantined] == ["b"]
    reason = report.quarantined[0][1]
    assert "unreadable bag" in reason and "moved to" in reason
    assert not (bags / "b").exists()
    assert (tmp_path / "state" / "quarantine" / "b" / "metadata.yaml").is_file()
    assert replay.quarantined_total == 1
    entry = json.loads(ledger_lines(tmp_path)[1])
    assert entry["name"] == "b" and entry["outcome"] == "quarantined"
    assert "unreadable bag" in entry["reason"]
    assert replay.poll().quarantined == []  # reported once
    again = make(tmp_path).poll()
    assert again.quarantined == [] and again.restored == 2


def test_failed_quarantine_move_is_recorded_and_not_retried(tmp_path, write_bag, truncate):
    bags = tmp_path / "bags"
    write_bag(bags, "bad")
    truncate(bags / "bad")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the quarantine directory should be")
    replay = make(tmp_path, quarantine_dir=blocker / "quarantine")
    (name, reason), = replay.poll().quarantined  # fmt: skip
    assert name == "bad" and "could not move it" in reason and "left in place" in reason
    assert (bags / "bad").is_dir()
    assert replay.poll().quarantined == []
    assert make(tmp_path).poll().quarantined == []


def test_skipped_bags_are_recorded_with_their_reason(tmp_path, write_bag):
    bags = tmp_path / "bags"
    write_bag(bags, "aborted", aborted=True)
    write_bag(bags, "empty", steps=0)
    write_bag(bags, "ungraded", graded=False)
    write_bag(bags, "good", task="lift-carrot", success=LIFT_OK)
    replay = make(tmp_path, impersonation="orig")
    report = replay.poll()
    assert report.ingested == ["good"]
    reasons = dict(report.skipped)
    assert reasons["aborted"].startswith("aborted:")
    assert "0 steps" in reasons["empty"] and "not graded" in reasons["ungraded"]
    assert replay.skipped_total == 3
    assert make(tmp_path, impersonation="orig").poll().skipped == []


def test_torn_ledger_line_is_tolerated_and_reported(tmp_path, write_bag):
    bags = tmp_path / "bags"
    for name in ("a", "b"):
        write_bag(bags, name, task="lift-carrot", success=LIFT_OK)
    make(tmp_path).poll()
    ledger = tmp_path / "state" / "ledger.jsonl"
    write_bag(bags, "c", task="lift-carrot", success=LIFT_OK)
    with open(ledger, "a") as f:  # the process died while appending c's line
        f.write('{"name": "c", "outcome": "ingest')

    replay = make(tmp_path)
    report = replay.poll()
    assert len(report.ledger_problems) == 1 and "torn last line" in report.ledger_problems[0]
    assert report.restored == 2 and report.ingested == ["c"]  # c was never recorded: redo it
    assert replay.ingested_total == 3 and replay.buffer.num_episodes == 3
    # the fragment got its own line; the next reader sees 3 records and 1 malformed line
    reread = make(tmp_path)
    assert len(reread.ledger.problems) == 1 and "malformed line" in reread.ledger.problems[0]
    assert reread.poll().restored == 3 and reread.ingested_total == 3


def test_restore_rebuilds_only_what_fits_the_budget(tmp_path, write_bag):
    bags = tmp_path / "bags"
    for i in range(4):
        write_bag(bags, f"ep{i}", task="lift-carrot", seed=i, success=LIFT_OK)
    budget = 3 * 5000  # one 3-step episode of 16 px images is ~4.1 kB with overheads
    first = make(tmp_path, memory_budget_bytes=budget)
    first.poll()
    assert first.buffer.num_episodes == 3 and first.buffer.evicted_episodes == 1
    second = make(tmp_path, memory_budget_bytes=budget)
    report = second.poll()
    assert report.restored == 3 and report.restore_not_needed == 1
    assert sample_signature(second) == sample_signature(first)


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="impersonation"):
        make(tmp_path, impersonation="skill_stochastic(2, 1)")
    with pytest.raises(ValueError, match="labels_source"):
        make(tmp_path, labels_source="magic")
    with pytest.raises(ValueError, match="sampler"):
        make(tmp_path, sampler="fifo")
