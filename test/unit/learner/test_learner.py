"""Learner (no ROS): polls a growing bag directory, trains, checkpoints every N steps keeping K,
resumes after being recreated (step count and ledger continue, nothing counted twice)."""

import json
import threading
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtopt_core.checkpoint import file_sha256, qnet_from_checkpoint, read_checkpoint
from mtopt_learner.config import LearnerConfig, LearnerConfigError
from mtopt_learner.errors import LearnError
from mtopt_learner.learner import Learner

TINY = dict(net="tiny", batch_size=4, cem_population=6, cem_elites=2, cem_iterations=1,
            torch_threads=1, log_every=1)  # fmt: skip


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(tmp_path, **kw) -> LearnerConfig:
    values = dict(bag_dir=str(tmp_path / "bags"), out_dir=str(tmp_path / "run"),
                  checkpoint_every=2, keep_checkpoints=2, min_episodes=2, poll_every_s=5.0,
                  max_bags_per_poll=1, **TINY)  # fmt: skip
    values.update(kw)
    return LearnerConfig(**values)


def ledger_names(tmp_path) -> list[str]:
    lines = (tmp_path / "run" / "logreplay" / "ledger.jsonl").read_text().splitlines()
    return [json.loads(line)["name"] for line in lines]


def ckpt_names(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))


def test_trains_checkpoints_every_n_keeping_k_and_resumes(tmp_path, write_bag, registry):
    bags = tmp_path / "bags"
    write_bag(bags, "ep0", task="lift-carrot", seed=0, success={"lift-carrot": True})
    write_bag(bags, "ep1", task="lift-any", seed=1, success={"lift-any": False})
    write_bag(bags, "ep2", task="place-any", seed=2, success={"place-any": True})
    write_bag(bags, "ep3", task="lift-any", seed=3, aborted=True)
    clock = FakeClock()
    learner = Learner(config(tmp_path), registry, clock=clock)

    # one bag per poll (max_bags_per_poll 1); no training before 2 episodes are in the replay
    assert learner.tick() is None and learner.trainer is None
    assert learner.replay.buffer.num_episodes == 1 and "waiting for data: 1/2" in learner.status()
    events = [learner.tick()]  # ep1: 2 episodes, the first step
    assert learner.step == 1 and learner.replay.buffer.num_episodes == 2
    while learner.step < 5:
        events.append(learner.tick())
    # ep2 and ep3 came with the next polls (pending backlog: polled again at once)
    assert learner.replay.ingested_total == 3 and learner.replay.skipped_total == 1
    published = [e for e in events if e is not None]
    assert [e.version for e in published] == [2, 4]
    for event in published[-1:]:
        assert Path(event.path).is_absolute() and event.sha256 == file_sha256(event.path)
        assert event.model_preset == "tiny" and event.task_names == registry.names
        _, ckpt = qnet_from_checkpoint(event.path, registry.names, event.sha256)
        assert ckpt.step == event.version and ckpt.qnet_config.image_size == 16
    assert ckpt_names(tmp_path) == ["qnet_2.ckpt", "qnet_4.ckpt"]
    assert "step 5" in learner.status() and "3 ingested" in learner.status()

    stopped = learner.close()  # stopped between checkpoints: the current step is saved
    assert stopped.version == 5 and ckpt_names(tmp_path) == ["qnet_4.ckpt", "qnet_5.ckpt"]
    weights = {k: v.clone() for k, v in learner.trainer.qnet.state_dict().items()}

    write_bag(bags, "ep4", task="lift-banana", seed=4, success={"lift-banana": True})
    again = Learner(config(tmp_path), registry, clock=clock)
    assert again.step == 5  # weights, targets and optimizer from qnet_5
    for name, tensor in again.trainer.qnet.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    announced = again.tick()  # the resumed checkpoint is announced first
    assert (announced.version, announced.sha256) == (5, stopped.sha256)
    again.tick()  # restores the 3 ledger episodes, ingests ep4, trains
    assert again.replay.restored == 3 and again.replay.new_this_run == 1
    assert again.replay.ingested_total == 4 and again.step == 6
    while again.step < 8:
        again.tick()
    assert again.checkpoints.last_step == 8 and ckpt_names(tmp_path) == [
        "qnet_6.ckpt", "qnet_8.ckpt"
    ]  # fmt: skip
    assert again.tick() is None and again.replay.ingested_total == 4  # nothing new, no recount
    names = ledger_names(tmp_path)
    assert sorted(names) == ["ep0", "ep1", "ep2", "ep3", "ep4"]  # each bag once
    again.close()


def test_polls_when_due_and_waits_for_min_episodes(tmp_path, write_bag, registry):
    bags = tmp_path / "bags"
    clock = FakeClock()
    learner = Learner(config(tmp_path, max_bags_per_poll=0), registry, clock=clock)
    assert learner.tick() is None and learner.idle is False  # polled an empty (missing) dir
    assert learner.tick() is None and learner.idle  # nothing due
    write_bag(bags, "ep0", seed=0)
    write_bag(bags, "ep1", seed=1, success={"lift-any": False})
    clock.now += 4.9
    learner.tick()
    assert learner.replay.ingested_total == 0  # the next poll is not due yet
    clock.now += 0.2
    learner.tick()
    assert learner.replay.ingested_total == 2 and learner.step == 1
    learner.close()


def test_run_stops_at_max_steps_with_a_final_checkpoint(tmp_path, write_bag, registry, truncate):
    bags = tmp_path / "bags"
    write_bag(bags, "ep0", seed=0)
    write_bag(bags, "ep1", seed=1, success={"lift-any": False})
    write_bag(bags, "ep2", seed=2)
    truncate(bags / "ep1")
    cfg = config(tmp_path, max_steps=5, checkpoint_every=3, min_episodes=1, max_bags_per_poll=0)
    learner = Learner(cfg, registry)
    published, lines = [], []
    learner.run(threading.Event(), published.append, lines.append)
    assert learner.done and learner.step == 5
    assert [e.version for e in published] == [3, 5]  # every 3 steps, and the last step
    assert learner.replay.quarantined_total == 1 and learner.replay.ingested_total == 2
    assert (tmp_path / "run" / "logreplay" / "quarantine" / "ep1").is_dir()
    assert learner.close() is None  # step 5 has its checkpoint already
    # TensorBoard: the trainer's loss / per-task Q and the learner's buffer and ingest scalars
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "q/lift-any", "learner/ingest_rate", "learner/bags_ingested"} <= tags
    assert "replay/lift-any/success_transitions" in tags

    # recreated with the same max_steps: announces the final checkpoint and is done at once
    again = Learner(cfg, registry)
    published.clear()
    again.run(threading.Event(), published.append)
    assert [e.version for e in published] == [5] and again.step == 5 and again.done
    assert read_checkpoint(published[0].path).step == 5
    again.close()


def test_bad_settings_and_unusable_run_directories(tmp_path, write_bag, registry):
    with pytest.raises(LearnerConfigError, match="checkpoint_every must be >= 1") as err:
        config(tmp_path, checkpoint_every=0).validate()
    assert err.value.field == "checkpoint_every"
    with pytest.raises(LearnerConfigError, match="impersonation"):
        config(tmp_path, impersonation="skill_stochastic:2,0").validate()
    with pytest.raises(LearnerConfigError, match="labels must be one of"):
        config(tmp_path, labels="guess").validate()
    with pytest.raises(LearnerConfigError, match="cem_elites"):
        config(tmp_path, cem_elites=9).validate()
    with pytest.raises(LearnerConfigError, match="conservative_weight must be >= 0"):
        config(tmp_path, conservative_weight=-1.0).validate()

    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "latest").write_text("qnet_7.ckpt\n")
    with pytest.raises(LearnError, match="names 'qnet_7.ckpt', which does not exist"):
        Learner(config(tmp_path), registry)
    (ckpts / "latest").unlink()
    (ckpts / "qnet_7.ckpt").write_bytes(b"x")
    with pytest.raises(LearnError, match="no 'latest' pointer"):
        Learner(config(tmp_path), registry)


def test_without_wait_for_data_unusable_bags_stop_the_run_with_mtopt_learns_message(
    tmp_path, write_bag, registry, capsys
):
    """A finished bag directory whose bags all get skipped (ungraded bags, SD labels) stops the
    learner with the message `mtopt-learn` prints for the same directory, instead of waiting
    for data forever."""
    from mtopt_learner.offline import main as mtopt_learn

    bags = tmp_path / "bags"
    write_bag(bags, "ep0", seed=0, graded=False)
    write_bag(bags, "ep1", seed=1, graded=False)
    assert mtopt_learn(["--bags", str(bags), "--out", str(tmp_path / "cli"), "--steps", "1"]) == 2
    cli_message = (
        capsys.readouterr().err.strip().splitlines()[-1].removeprefix("mtopt-learn: error: ")
    )
    assert cli_message.startswith(f"no usable episodes in {bags}: 2 skipped")

    cfg = config(tmp_path, min_episodes=1, max_bags_per_poll=1, wait_for_data=False)
    learner = Learner(cfg, registry, clock=FakeClock())
    assert learner.tick() is None  # ep0 skipped; ep1 pending: not every bag seen yet
    with pytest.raises(LearnError) as err:
        learner.tick()
    assert str(err.value) == cli_message.replace(str(bags), str(bags.resolve()))
    learner.close()

    # Waiting (the default) keeps polling: cells may still be writing bags.
    waiting = Learner(config(tmp_path, out_dir=str(tmp_path / "run2"), min_episodes=1,
                             max_bags_per_poll=0), registry, clock=FakeClock())  # fmt: skip
    assert waiting.tick() is None and "waiting for data: 0/1" in waiting.status()
    waiting.close()

    # An empty directory, and fewer usable episodes than min_episodes, are refused too.
    empty = Learner(config(tmp_path, bag_dir=str(tmp_path / "none"), out_dir=str(tmp_path / "r3"),
                           wait_for_data=False), registry)  # fmt: skip
    with pytest.raises(LearnError, match="no complete episode bags in"):
        empty.tick()
    write_bag(bags, "ep2", seed=2)
    few = Learner(config(tmp_path, out_dir=str(tmp_path / "r4"), min_episodes=2,
                         max_bags_per_poll=0, wait_for_data=False), registry)  # fmt: skip
    with pytest.raises(LearnError, match="only 1 usable episodes .* min_episodes is 2"):
        few.tick()
