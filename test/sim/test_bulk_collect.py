"""Bulk simulated collection (`mtopt-sim-collect`): the cell's collector and policy logic in
process, bags the learner decodes like the ROS logger's, the same physics as the gym env,
resumable runs, verified weights, the success detector, Ray actors."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mtopt_core.checkpoint import save_checkpoint, sidecar_path
from mtopt_core.episode_bag import list_episode_bags, read_bag_messages
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.sd_model import SDModelConfig, SuccessDetector
from mtopt_core.sd_model import save_checkpoint as save_sd_checkpoint
from mtopt_core.tasks import load_task_registry
from mtopt_learner.episode_decoder import episode_from_bag
from mtopt_policy.config import PolicyConfig
from mtopt_sim.bag_writer import recorded_topics
from mtopt_sim.bulk_cell import InProcessCell, WorkerSpec, env_config, worker_seeds
from mtopt_sim.bulk_collect import (
    CollectConfig,
    CollectUsageError,
    assign_episodes,
    collect,
    task_weights,
)
from mtopt_sim.env import MTOptCell

REGISTRY = load_task_registry()
NAMES = REGISTRY.names
CLI = [sys.executable, "-m", "mtopt_sim.bulk_collect"]


def expected_topics(ns: str) -> dict[str, str]:
    return {f"{ns}/{topic}": msgtype for topic, msgtype in recorded_topics().items()}


def topics_of(bag: Path) -> dict[str, str]:
    return {m.topic: m.msgtype for m in read_bag_messages(bag)}


def run_cli(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------ planning
def test_missing_episodes_are_split_evenly_over_the_workers():
    assert assign_episodes(10, Counter(), [0, 1]) == [5, 5]
    assert assign_episodes(7, Counter(), [0, 1, 2]) == [3, 2, 2]
    # A resumed run: the remainder goes to the cell with the fewest bags.
    assert assign_episodes(10, Counter({0: 4, 1: 2}), [0, 1]) == [2, 2]
    assert assign_episodes(10, Counter({0: 4, 1: 1}), [0, 1]) == [2, 3]
    # Resumed with a second worker after a one-worker run: both workers collect.
    assert assign_episodes(20, Counter({0: 14}), [0, 1]) == [3, 3]
    # Bags of another cell count toward the total; nothing is missing once it is reached.
    assert assign_episodes(10, Counter({5: 8}), [0, 1]) == [1, 1]
    assert assign_episodes(10, Counter({0: 6, 1: 6}), [0, 1]) == [0, 0]


def test_task_choice_keeps_place_tasks_after_lifts():
    skills = ("object_acquisition", "object_manipulation")

    def weights(*tasks: str) -> dict[str, str]:
        return dict(item.split("=") for item in task_weights(REGISTRY, tasks, *skills))

    chosen = weights("lift-can")
    assert chosen["lift-can"] == "1" and chosen["lift-any"] == "0"
    assert all(chosen[t] == "1" for t in REGISTRY.tasks_of_skill("object_manipulation"))
    chosen = weights("lift-any=3", "place-bottom")
    assert chosen["lift-any"] == "3" and chosen["place-bottom"] == "1"
    assert chosen["place-any"] == "0"
    with pytest.raises(CollectUsageError, match="unknown task 'lift-unicorn'"):
        weights("lift-unicorn")
    with pytest.raises(CollectUsageError, match="no task of skill object_acquisition"):
        weights("place-any")
    assert task_weights(REGISTRY, [], *skills) == ()


# ------------------------------------------------------------------------------ one cell
@pytest.fixture(scope="module")
def three_episodes(tmp_path_factory):
    """One cell, three logged episodes, with the plans they ran (for the replay test)."""
    out = tmp_path_factory.mktemp("bulk_three")
    spec = WorkerSpec(cell_id=3, out_dir=str(out), seed_entropy=(11, 3, 0))
    cell = InProcessCell(spec, REGISTRY)
    plans = []
    plan = cell.planner.plan

    def recording_plan(*args, **kwargs):
        plans.append(plan(*args, **kwargs))
        return plans[-1]

    cell.planner.plan = recording_plan
    records = cell.collect(3)
    cell.close()
    return spec, records, plans


def test_place_starts_turn_lift_draws_into_place_episodes_from_a_grasp(tmp_path):
    spec = WorkerSpec(
        cell_id=4, out_dir=str(tmp_path), seed_entropy=(12, 4, 0), place_start_fraction=1.0
    )
    cell = InProcessCell(spec, REGISTRY)
    try:
        records = cell.collect(3)
    finally:
        cell.close()
    places = REGISTRY.tasks_of_skill("object_manipulation")
    place_names = {t if isinstance(t, str) else t.name for t in places}
    # Every draw grasps first (the noise-free pick on these scenes holds), so no lift runs.
    assert [r["task"] in place_names for r in records] == [True] * 3, records
    assert all(r["grasped_start"] for r in records)
    for r in records:  # each place episode starts holding what the unlogged grasp picked
        first = next(m for m in read_bag_messages(r["bag"]) if m.topic.endswith("gripper/state"))
        assert first.message.object_detected, r
    with pytest.raises(ValueError, match="place_start_fraction"):
        WorkerSpec(cell_id=0, out_dir="x", seed_entropy=(0,), place_start_fraction=-0.1)


def test_a_bulk_bag_is_a_logger_bag_the_learner_decodes(three_episodes):
    spec, records, plans = three_episodes
    for record, plan in zip(records, plans, strict=True):
        bag = Path(record["bag"])
        assert bag.name == record["episode_id"] and bag.name.startswith("cell3_")
        messages = list(read_bag_messages(bag))
        assert topics_of(bag) == expected_topics("/cell3")
        assert messages[-1].topic == "/cell3/episode_info"
        stamps = [m.timestamp_ns for m in messages]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        info = messages[-1].message
        assert (info.episode_id, info.cell_id, info.task) == (bag.name, 3, plan.task)
        assert info.policy_kind == plan.kind == record["policy_kind"]
        assert tuple(info.task_names) == NAMES and info.has_oracle
        assert len(info.sd_probabilities) == 0 and info.sd_model_version == ""  # no SD given
        assert not info.aborted and info.steps == record["steps"] >= 1
        steps = [m.message for m in messages if m.topic == "/cell3/policy/step"]
        assert [s.step for s in steps] == list(range(info.steps))
        assert info.terminated == bool(steps[-1].action[5] >= 0.5)
        decoded = episode_from_bag(bag, REGISTRY, "oracle")
        assert decoded.usable, decoded.skip_reason
        episode = decoded.episode
        assert episode.images.shape == (info.steps + 1, 64, 64, 3)
        assert episode.labels == dict(zip(NAMES, map(bool, info.oracle_success), strict=True))
        assert record["success"] == episode.labels[plan.task]
    bags = list_episode_bags(Path(records[0]["bag"]).parent)
    assert [b.name for b in bags] == [r["episode_id"] for r in records]
    assert not list(bags[0].parent.glob("*.part"))


def test_bulk_episodes_are_the_gym_episodes_of_the_same_actions(three_episodes):
    """The same scene, starts and actions through `MTOptCell.reset` / `step` give the bags'
    observations (images, gripper state, height), final observations and labels, episode
    after episode (each one starts from where the previous one left the scene)."""
    spec, records, plans = three_episodes
    scene_seed, _, _ = worker_seeds(spec.seed_entropy)
    env = MTOptCell(env_config(spec.policy, spec.collector, spec.cell_id, spec.camera_size))
    try:
        env.reset(seed=scene_seed)
        for record, plan in zip(records, plans, strict=True):
            options = {
                "task": plan.task,
                "start": plan.start_position,
                "start_yaw": plan.start_yaw,
            }
            obs, _ = env.reset(options=options)
            episode = episode_from_bag(record["bag"], REGISTRY, "oracle").episode
            for t, action in enumerate(episode.actions):
                np.testing.assert_array_equal(obs["image"], episode.images[t])
                assert bool(obs["gripper_closed"]) == episode.gripper_closed[t]
                assert obs["gripper_height"][0] == episode.height[t]
                obs, _, terminated, truncated, info = env.step(action)
            assert terminated or truncated
            # The final observation: at the present pose, after the settle time.
            np.testing.assert_array_equal(obs["image"], episode.images[-1])
            assert bool(obs["gripper_closed"]) == episode.gripper_closed[-1]
            assert obs["gripper_height"][0] == pytest.approx(episode.height[-1], abs=1e-6)
            assert info["oracle"] == episode.labels
    finally:
        env.close()
    # Not a trivial replay: some episode ended with the gripper closed, so the next lift
    # episode had to open it first.
    assert any(episode_from_bag(r["bag"], REGISTRY, "oracle").episode.gripper_closed[-1]
               for r in records[:-1])  # fmt: skip


def test_the_same_seed_collects_the_same_episodes(tmp_path):
    def actions(out: Path) -> list:
        spec = WorkerSpec(cell_id=0, out_dir=str(out), seed_entropy=(5, 0, 0))
        cell = InProcessCell(spec, REGISTRY)
        records = cell.collect(3)
        cell.close()
        decoded = [episode_from_bag(r["bag"], REGISTRY, "oracle") for r in records]
        return [(d.task, d.info["policy_kind"], d.episode.actions.tolist()) for d in decoded]

    assert actions(tmp_path / "a") == actions(tmp_path / "b")


def tiny_weights(path: Path, step: int = 7, seed: int = 0) -> str:
    torch.manual_seed(seed)
    qnet = QNet(QNetConfig.tiny(len(NAMES), image_size=64))
    return save_checkpoint(path, qnet, NAMES, step=step)


def test_weights_drive_cem_episodes_an_sd_grades_them_and_new_weights_load(tmp_path):
    sha = tiny_weights(tmp_path / "q.ckpt")
    torch.manual_seed(0)
    save_sd_checkpoint(tmp_path / "sd.ckpt", SuccessDetector(SDModelConfig(task_names=NAMES)))
    policy = dataclasses.replace(PolicyConfig(), scripted_fraction=0.0, epsilon=0.3)
    spec = WorkerSpec(
        cell_id=0, out_dir=str(tmp_path / "eps"), seed_entropy=(1, 0, 0), policy=policy,
        weights=str(tmp_path / "q.ckpt"), sd_checkpoint=str(tmp_path / "sd.ckpt"),
        camera_frames="final",
    )  # fmt: skip
    cell = InProcessCell(spec, REGISTRY)
    records = cell.collect(2)
    # A learner writes newer weights to the same file: the next episode acts with them.
    new_sha = tiny_weights(tmp_path / "q.ckpt", step=9, seed=1)
    records += cell.collect(1)
    cell.close()
    for k, record in enumerate(records):
        messages = list(read_bag_messages(record["bag"]))
        info = messages[-1].message
        assert info.policy_kind == "cem" and info.epsilon == pytest.approx(0.3)
        expected = (7, sha) if k < 2 else (9, new_sha)
        assert (info.weights_version, info.weights_sha256) == expected
        assert len(info.sd_probabilities) == len(NAMES) and info.sd_model_version
        assert episode_from_bag(record["bag"], REGISTRY, "sd").usable
        # camera_frames "final": only the final frame of each camera
        cameras = Counter(m.topic for m in messages if "/camera/" in m.topic)
        assert sorted(cameras.values()) == [1, 1, 1]
    assert sha != new_sha


# ------------------------------------------------------------------------------ the CLI
def test_cli_collects_resumes_and_never_duplicates(tmp_path):
    out = tmp_path / "eps"
    first = run_cli("--episodes", "3", "--workers", "2", "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["collected"], summary["total"], summary["existing_before"]) == (3, 3, 0)
    bags = list_episode_bags(out)
    assert len(bags) == 3 and {b.name[:6] for b in bags} == {"cell0_", "cell1_"}
    # A run killed mid-episode leaves a .part bag: the next run removes it and goes on.
    (out / "cell1_20260101T000000_dead_00009.part").mkdir()
    again = run_cli("--episodes", "5", "--workers", "2", "--out", str(out), "--no-progress")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["existing_before"], summary["collected"], summary["total"]) == (3, 2, 5)
    assert summary["stale_parts_removed"] == 1
    names = [b.name for b in list_episode_bags(out)]
    assert len(names) == 5 == len(set(names)) and not list(out.glob("*.part"))
    assert set(names) > {b.name for b in bags}  # the first bags are untouched
    done = run_cli("--episodes", "5", "--workers", "2", "--out", str(out), "--no-progress")
    assert done.returncode == 0 and json.loads(done.stdout)["collected"] == 0
    # The resumed episodes are new ones (new scenes from the resumed seeds), not repeats.
    actions = [tuple(episode_from_bag(b, REGISTRY, "oracle").episode.actions.ravel())
               for b in list_episode_bags(out)]  # fmt: skip
    assert len(set(actions)) == 5


def test_a_killed_run_leaves_only_complete_bags(tmp_path):
    out = tmp_path / "eps"
    proc = subprocess.Popen(
        [*CLI, "--episodes", "500", "--workers", "2", "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(list_episode_bags(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in stderr, stderr
    bags = list_episode_bags(out)
    assert 2 <= len(bags) < 500 and not list(out.glob("*.part"))
    assert all(episode_from_bag(b, REGISTRY, "oracle").usable for b in bags)


def test_cli_refuses_bad_input_with_a_clear_message(tmp_path):
    tiny_weights(tmp_path / "q.ckpt")
    sidecar_path(tmp_path / "q.ckpt").write_text("0" * 64 + "  q.ckpt\n")
    bad_sha = run_cli("--episodes", "1", "--out", str(tmp_path / "e"), "--weights",
                      str(tmp_path / "q.ckpt"))  # fmt: skip
    assert bad_sha.returncode == 2 and "refused" in bad_sha.stderr and "sha256" in bad_sha.stderr
    unknown = run_cli("--episodes", "1", "--out", str(tmp_path / "e"), "--tasks", "lift-moon")
    assert unknown.returncode == 2 and "unknown task 'lift-moon'" in unknown.stderr
    params = tmp_path / "p.yaml"
    params.write_text("/**/policy:\n  ros__parameters:\n    epsilonn: 0.2\n")
    typo = run_cli("--episodes", "1", "--out", str(tmp_path / "e"), "--params-file", str(params))
    assert typo.returncode == 2 and "did you mean 'epsilon'" in typo.stderr
    assert not list_episode_bags(tmp_path / "e")


def test_ray_actors_collect_like_processes(tmp_path):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = CollectConfig(
            episodes=2, out=tmp_path / "eps", workers=1, ray_address="auto", progress=False
        )
        result = collect(config, REGISTRY)
    finally:
        ray.shutdown()
    assert result.summary["backend"] == "ray" and result.summary["collected"] == 2
    bags = list_episode_bags(tmp_path / "eps")
    assert len(bags) == 2 and all(topics_of(b) == expected_topics("/cell0") for b in bags)


# ------------------------------------------------------------------- against the ROS graph
def _bag_shape(bag: Path) -> dict:
    """What the learner and the bag tools see of a bag, independent of its content: topics
    and types, image formats, joint names, EpisodeInfo fields, the decoded Episode's layout."""
    messages = list(read_bag_messages(bag))
    info = messages[-1].message
    images = {
        (m.topic.rsplit("/", 2)[-2], m.message.width, m.message.height, m.message.encoding,
         m.message.header.frame_id)
        for m in messages if m.msgtype == "sensor_msgs/msg/Image"
    }  # fmt: skip
    joints = {tuple(m.message.name) for m in messages if m.topic.endswith("joint_states")}
    decoded = episode_from_bag(bag, REGISTRY, "oracle")
    episode = decoded.episode
    return {
        "topics": topics_of(bag),
        "last": messages[-1].topic,
        "images": images,
        "joints": joints,
        "info": (tuple(info.task_names), info.has_oracle, len(info.oracle_success),
                 len(info.sd_probabilities), info.weights_version, info.aborted),
        "decoded": (decoded.skip_reason, sorted(vars(episode)), episode.images.shape[1:],
                    episode.images.dtype, episode.actions.shape[1:], episode.actions.dtype,
                    episode.height.dtype, episode.gripper_closed.dtype,
                    episode.object_detected.dtype, sorted(episode.labels),
                    len(episode.images) - len(episode.actions)),
    }  # fmt: skip


@pytest.mark.ros
def test_bulk_bags_are_shaped_like_ros_logged_bags(tmp_path):
    """Two episodes through the ROS graph (sim cell, arm controller, policy, logger, collector
    as processes over DDS) and two bulk episodes: the same topics, types, image formats,
    EpisodeInfo fields and decoded episodes (the learner cannot tell them apart)."""
    ros_dir, bulk_dir = tmp_path / "ros", tmp_path / "bulk"
    launch = subprocess.run(
        [str(Path(sys.executable).parent / "mtopt-launch"), "--log-dir", str(tmp_path / "log"),
         "mtopt_bringup", "sim_cell.launch.yaml", "episodes:=2", f"episode_dir:={ros_dir}",
         "seed:=4"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert launch.returncode == 0, launch.stdout[-4000:]
    result = collect(CollectConfig(episodes=2, out=bulk_dir, workers=1, progress=False), REGISTRY)
    assert result.summary["collected"] == 2
    ros_bags = [b for b in list_episode_bags(ros_dir)
                if not list(read_bag_messages(b))[-1].message.aborted]  # fmt: skip
    assert ros_bags, "every ROS episode aborted (an overloaded machine?)"
    ros = [_bag_shape(b) for b in ros_bags]
    bulk = [_bag_shape(b) for b in list_episode_bags(bulk_dir)]
    for shape in ros + bulk:
        assert shape == ros[0]
