"""The guided pick (`mtopt_sim.guided`): simulator-aimed exploration from the uniform start of
CEM and random episodes, and its share in bulk collection."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from mtopt_core.episode_bag import read_bag_messages
from mtopt_core.tasks import load_task_registry
from mtopt_policy.scripted import ScriptedConfig, ScriptedPick
from mtopt_sim.bulk_cell import InProcessCell, WorkerSpec
from mtopt_sim.bulk_collect import build_parser, config_from_args, task_weights, worker_specs
from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.guided import (
    DECOY_KIND,
    KIND,
    GuidedConfig,
    GuidedPick,
    object_category,
    yaw_error,
)
from mtopt_sim.scripted import bin_geometry
from mtopt_sim.sim_params import sim_collector_config

EPISODES = 12


def test_yaw_error_takes_the_short_way_within_the_workspace():
    assert yaw_error(0.5, 0.2) == pytest.approx(0.3)
    # -1.4 + pi = 1.74 is outside [-pi/2, pi/2]: the long way, inside.
    assert yaw_error(-1.4, 1.4) == pytest.approx(-2.8)
    # 1.5 is the same grasp as 1.5 - pi = -1.64 (outside): the rotation stays inside.
    assert yaw_error(1.5, -1.5) == pytest.approx(3.0)
    assert yaw_error(-1.5 + math.pi, -1.2) == pytest.approx(-0.3)  # equivalent, inside


def _run(env, rng, source_for_episode, seed, task="lift-any"):
    """One episode of a lift task from a uniform start; the source's actions until it ends."""
    env.reset(seed=seed)
    starter = ScriptedPick(ScriptedConfig(), env.config.action_spec, rng)
    options = starter.start_options(bin_geometry(env.cell))
    obs, _ = env.reset(options={**options, "task": task})
    source = source_for_episode(starter)
    while True:
        o = SimpleNamespace(
            height=float(obs["gripper_height"][0]), gripper_closed=bool(obs["gripper_closed"])
        )
        obs, _, terminated, truncated, info = env.step(source(o))
        if terminated or truncated:
            return bool(info["oracle"][task])


def test_noise_free_guided_pick_aims_where_the_blind_pick_cannot(env):
    rng = np.random.default_rng(3)

    def guided(_starter):
        pick = GuidedPick(env.cell, rng, env.config.action_spec, GuidedConfig(noise=0.0))
        return lambda o: pick.act(o).action

    def blind(starter):  # the noise-free scripted pick: straight down from the same start
        return lambda o: starter.act({"gripper_height": [o.height]})

    aimed = [_run(env, rng, guided, seed=100 + k) for k in range(EPISODES)]
    straight = [_run(env, rng, blind, seed=100 + k) for k in range(EPISODES)]
    assert sum(aimed) >= 0.7 * EPISODES, aimed
    assert sum(aimed) > sum(straight) + 2, (aimed, straight)


def test_a_guided_pick_for_lift_x_goes_for_an_object_x(env):
    registry = load_task_registry()
    assert object_category(registry, "lift-banana") == "banana"
    assert object_category(registry, "lift-any") is None
    assert object_category(registry, "place-bottom") is None
    rng = np.random.default_rng(5)

    def guided_for(category):
        def source(_starter):
            pick = GuidedPick(
                env.cell, rng, env.config.action_spec, GuidedConfig(noise=0.0),
                category=category,
            )  # fmt: skip
            return lambda o: pick.act(o).action

        return source

    # The same scenes and starts: aimed at a banana, and at the nearest object of any kind.
    task, seeds = "lift-banana", range(200, 200 + EPISODES)
    starts = np.random.default_rng  # the start draw of scene s: its own stream, seed s
    commanded = [_run(env, starts(s), guided_for("banana"), seed=s, task=task) for s in seeds]
    nearest = [_run(env, starts(s), guided_for(None), seed=s, task=task) for s in seeds]
    # A noise-free guided pick lifts a banana in about 7-9 of these 12 (bananas are long and
    # curved); the nearest object is a banana in about one scene in seven.
    assert sum(commanded) >= 0.4 * EPISODES, commanded
    assert sum(commanded) > sum(nearest) + 3, (commanded, nearest)


def test_guided_pick_moves_in_the_tool_frame_of_a_tool_frame_cell():
    # A cell reading moves in the gripper's frame, turned far from the base frame: the guided
    # pick's first move must still head for its grasp (read in the wrong frame it would turn
    # by the yaw, here 1.2 rad).
    env = MTOptCell(EnvConfig(action_frame="tool"))
    try:
        env.reset(seed=4)
        rng = np.random.default_rng(3)
        headings = []
        for x, y in ((0.02, -0.06), (-0.05, 0.05), (0.06, 0.04)):
            center = env.cell.scene_config.bin_center("right")
            start = [center[0] + x, center[1] + y, env.cell.floor_z + 0.2]
            obs, _ = env.reset(options={"start": start, "start_yaw": 1.2, "task": "lift-any"})
            pick = GuidedPick(
                env.cell, rng, env.config.action_spec, GuidedConfig(noise=0.0),
                action_frame="tool",
            )  # fmt: skip
            before = env.cell.tcp_pose()[0][:2]
            o = SimpleNamespace(height=float(obs["gripper_height"][0]), gripper_closed=False)
            env.step(pick.act(o).action)
            moved, wanted = env.cell.tcp_pose()[0][:2] - before, pick._xy - before
            headings.append(moved @ wanted / np.linalg.norm(moved) / np.linalg.norm(wanted))
    finally:
        env.close()
    assert min(headings) > 0.9, headings
    with pytest.raises(ValueError, match="frame"):
        GuidedPick(None, rng, action_frame="camera")


def _collect(tmp_path, episodes: int, **spec) -> list[dict]:
    """Episode records of one in-process bulk cell with these `WorkerSpec` settings."""
    worker = WorkerSpec(cell_id=2, out_dir=str(tmp_path), seed_entropy=(5, 2, 0), **spec)
    cell = InProcessCell(worker, load_task_registry())
    try:
        return cell.collect(episodes)
    finally:
        cell.close()


def test_bulk_collection_runs_the_guided_share_of_lift_episodes(tmp_path):
    records = _collect(tmp_path, 4, guided_fraction=1.0)
    lifts = [r for r in records if r["task"].startswith("lift")]
    assert lifts and all(r["policy_kind"] == KIND for r in lifts)
    assert all(r["policy_kind"] != KIND for r in records if not r["task"].startswith("lift"))
    info = list(read_bag_messages(records[0]["bag"]))[-1].message
    assert info.policy_kind == records[0]["policy_kind"]


def test_a_decoy_moves_like_a_guided_pick_to_a_random_point_of_the_bin(env, tmp_path):
    env.reset(seed=5)
    scene = env.cell.scene_config
    center, half = np.asarray(scene.bin_center("right")), np.asarray(scene.bin_half("right"))
    rng = np.random.default_rng(0)
    config = GuidedConfig(noise=0.0, decoy_fraction=1.0)
    targets = []
    for _ in range(20):
        pick = GuidedPick(env.cell, rng, env.config.action_spec, config)
        assert pick.kind == DECOY_KIND
        grasp = pick._target(np.zeros(2))
        assert grasp.object_index == -1 and pick._target(np.ones(2)) is grasp  # fixed
        assert (np.abs(grasp.xy - center) <= half - config.decoy_margin + 1e-9).all()
        targets.append(grasp.xy)
    assert np.ptp(np.array(targets), axis=0).min() > 0.5 * (half - config.decoy_margin).min()
    assert GuidedPick(env.cell, rng, env.config.action_spec, GuidedConfig()).kind == KIND
    with pytest.raises(ValueError, match="decoy_fraction"):
        GuidedConfig(decoy_fraction=1.5)
    records = _collect(tmp_path, 2, guided_fraction=1.0, guided_decoy_fraction=1.0)
    lifts = [r for r in records if r["task"].startswith("lift")]
    assert lifts and all(r["policy_kind"] == DECOY_KIND for r in lifts)
    with pytest.raises(ValueError, match="guided_decoy_fraction"):
        WorkerSpec(cell_id=0, out_dir="x", seed_entropy=(0,), guided_decoy_fraction=-0.1)


@pytest.mark.parametrize("aim, category", [("commanded", "banana"), ("nearest", None)])
def test_bulk_collection_aims_lift_x_guided_picks_as_asked(tmp_path, monkeypatch, aim, category):
    seen = []

    class Spy(GuidedPick):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.category)

    monkeypatch.setattr("mtopt_sim.bulk_cell.GuidedPick", Spy)
    registry = load_task_registry()
    weights = task_weights(registry, ["lift-banana"], "object_acquisition", "object_manipulation")
    collector = dataclasses.replace(sim_collector_config(), task_weights=weights).validate()
    _collect(tmp_path, 2, collector=collector, guided_fraction=1.0, guided_aim=aim)
    assert seen and set(seen) == {category}
    with pytest.raises(ValueError, match="guided_aim"):
        WorkerSpec(cell_id=0, out_dir="x", seed_entropy=(0,), guided_aim="farthest")


def test_the_collect_command_passes_the_guided_aim_to_every_worker(tmp_path):
    args = ["--episodes", "4", "--out", str(tmp_path), "--guided-fraction", "0.5"]
    for extra, aim in (([], "commanded"), (["--guided-aim", "nearest"], "nearest")):
        cfg = config_from_args(build_parser().parse_args(args + extra))
        specs = worker_specs(cfg, load_task_registry(), Counter())
        assert [spec.guided_aim for spec, _ in specs] == [aim, aim]


def test_no_guided_share_runs_no_guided_pick(tmp_path):
    records = _collect(tmp_path, 4)
    assert all(r["policy_kind"] != KIND for r in records)


def test_guided_config_refuses_nonsense():
    with pytest.raises(ValueError, match="noise"):
        GuidedConfig(noise=-1)
    with pytest.raises(ValueError, match="close_height"):
        GuidedConfig(close_height=0.1, hover_height=0.05)
    with pytest.raises(ValueError, match="guided_fraction"):
        WorkerSpec(cell_id=0, out_dir="x", seed_entropy=(0,), guided_fraction=1.5)
