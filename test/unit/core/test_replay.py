"""Replay: per-task success/failure buffers, rebalanced and uniform samplers, sparse reward,
episode-level image storage and FIFO eviction under a byte budget."""

from collections import Counter

import numpy as np
import pytest
import torch

from mtopt_core.episode import Episode
from mtopt_core.impersonation import Relabel
from mtopt_core.replay import (
    EPISODE_OVERHEAD_BYTES,
    REFERENCE_OVERHEAD_BYTES,
    ReplayBuffer,
    ReplayConfig,
)

TASKS = ("a", "b", "c", "d")


def episode(steps, ident=0, task="a", size=4):
    """Observation t's image is filled with 10 * ident + t, so samples can be traced back."""
    images = np.empty((steps + 1, size, size, 3), dtype=np.uint8)
    for t in range(steps + 1):
        images[t] = (10 * ident + t) % 256
    actions = np.zeros((steps, 6), np.float32)
    actions[:, 0] = np.arange(steps) / 10
    return Episode(
        images=images,
        gripper_closed=np.arange(steps + 1) % 2 == 1,
        height=np.arange(steps + 1, dtype=np.float32) / 100,
        actions=actions,
        task=task,
        episode_id=str(ident),
        object_detected=np.arange(steps + 1) % 3 == 2,
    )


def fill(buf, task, success, count, steps=3, start=0):
    for i in range(count):
        buf.add(episode(steps, start + i, task), [Relabel(task, success, True)])


def test_rebalanced_sampler_uniform_tasks_and_half_successes():
    buf = ReplayBuffer(TASKS, ReplayConfig(sampler="rebalanced", seed=0))
    fill(buf, "a", True, 90)
    fill(buf, "a", False, 10)
    fill(buf, "b", True, 5)
    fill(buf, "b", False, 200)
    fill(buf, "c", False, 20)  # no successes: the failure side is always taken
    # task d has no data and is never sampled
    n = 24000
    batch = buf.sample(n)
    counts = Counter(batch.task.tolist())
    assert set(counts) == {0, 1, 2}
    for t in (0, 1, 2):
        assert abs(counts[t] / n - 1 / 3) < 0.015
    success = batch.episode_success
    for t in (0, 1):
        assert abs(success[batch.task == t].mean() - 0.5) < 0.025
    assert not success[batch.task == 2].any()
    # the sparse reward marks exactly the final transitions of success rows
    np.testing.assert_array_equal(batch.reward, batch.done * success)


def _step_of(batch):
    return np.rint(batch.action[:, 0] * 10).astype(int)


def test_near_miss_sampler_draws_half_the_failures_at_the_end_of_near_misses():
    def near_misses(buf, count):
        """Episodes that failed task a but succeeded at b (a lift that held the wrong object),
        marked by a height no other episode has."""
        for i in range(count):
            ep = episode(3, i, "a")
            ep.height[:] = 9.0
            buf.add(ep, [Relabel("a", False, True), Relabel("b", True, False)])

    buf = ReplayBuffer(TASKS, ReplayConfig(sampler="rebalanced_near_miss", seed=0))
    fill(buf, "a", True, 20)
    fill(buf, "a", False, 190)
    near_misses(buf, 10)
    sizes = buf.buffer_sizes()
    assert sizes["a"]["near_miss_episodes"] == 10 and sizes["b"]["near_miss_episodes"] == 0
    assert sizes["a"]["failure_episodes"] == 200  # a near miss is still one of a's failures
    batch = buf.sample(20000)
    rows = batch.task == 0
    failures = batch.episode_success[rows] == 0
    near = batch.height[rows] == 9.0
    assert np.all(batch.reward[rows][near] == 0) and np.all(failures[near])
    # ... drawn at their labelled end, the last transition (the plain failures at any step).
    assert batch.done[rows][near].mean() > 0.9 and batch.done[rows][failures & ~near].mean() < 0.5
    # Half of a's failures come from the near-miss buffer, plus its 10/200 share of the rest.
    assert 0.5 < near[failures].mean() < 0.56, near[failures].mean()
    # The plain rebalanced sampler draws them at their share of the failures.
    plain = ReplayBuffer(TASKS, ReplayConfig(sampler="rebalanced", seed=0))
    fill(plain, "a", True, 20)
    fill(plain, "a", False, 190)
    near_misses(plain, 10)
    assert plain.buffer_sizes()["a"]["near_miss_episodes"] == 0
    batch = plain.sample(20000)
    rows = batch.task == 0
    failures = batch.episode_success[rows] == 0
    assert 0.03 < (batch.height[rows] == 9.0)[failures].mean() < 0.07


def test_uniform_sampler_follows_the_data():
    buf = ReplayBuffer(TASKS, ReplayConfig(sampler="uniform", seed=1))
    fill(buf, "a", True, 30, steps=2)  # 60 transitions
    fill(buf, "b", False, 60, steps=4)  # 240
    fill(buf, "c", True, 10, steps=6)  # 60
    n = 36000
    counts = Counter(buf.sample(n).task.tolist())
    for t, expected in ((0, 60 / 360), (1, 240 / 360), (2, 60 / 360)):
        assert abs(counts[t] / n - expected) < 0.015
    assert counts[3] == 0


def test_transitions_uniform_inside_a_buffer_and_batch_contents():
    buf = ReplayBuffer(TASKS, ReplayConfig(seed=2))
    buf.add(episode(1, 1, "a"), [Relabel("a", True, True)])
    buf.add(episode(7, 2, "a"), [Relabel("a", True, True), Relabel("b", False, False)])
    batch = buf.sample(16000)
    rows_a = batch.task == 0
    ident = (batch.image[:, 0, 0, 0].astype(int) - _step_of(batch)) // 10
    # episode 2 has 7 of the 8 transitions of buffer (a, success)
    assert abs((ident[rows_a] == 2).mean() - 7 / 8) < 0.02
    steps = _step_of(batch)
    last = np.where(ident == 1, 0, 6)
    np.testing.assert_array_equal(batch.done, (steps == last).astype(np.float32))
    # sparse reward: only the final transition of a success relabel
    np.testing.assert_array_equal(batch.reward, ((steps == last) & rows_a).astype(np.float32))
    np.testing.assert_array_equal(batch.next_image[:, 0, 0, 0], batch.image[:, 0, 0, 0] + 1)
    np.testing.assert_array_equal(batch.gripper_closed, steps % 2)
    np.testing.assert_array_equal(batch.next_gripper_closed, (steps + 1) % 2)
    np.testing.assert_allclose(batch.height, steps / 100, atol=1e-6)
    np.testing.assert_allclose(batch.next_height, (steps + 1) / 100, atol=1e-6)
    np.testing.assert_array_equal(batch.object_detected, steps % 3 == 2)
    np.testing.assert_array_equal(batch.next_object_detected, (steps + 1) % 3 == 2)
    tb = buf.sample(4).to_torch()
    assert tb.image.dtype == torch.uint8 and tb.image.shape == (4, 4, 4, 3)
    assert tb.task.dtype == torch.int64 and tb.action.shape == (4, 6)


def test_images_stored_once_per_episode_not_per_relabel_or_transition():
    buf = ReplayBuffer(TASKS)
    ep = episode(10, 0, "a", size=64)
    buf.add(ep, [Relabel(t, t == "a", t == "a") for t in TASKS])
    assert ep.images.nbytes == 11 * 64 * 64 * 3
    expected = ep.nbytes + EPISODE_OVERHEAD_BYTES + 4 * REFERENCE_OVERHEAD_BYTES
    assert buf.nbytes == expected
    assert buf.num_transitions == 10 and buf.num_relabelled_transitions == 40


def test_fifo_eviction_respects_the_byte_budget():
    one = episode(3, 0).nbytes + EPISODE_OVERHEAD_BYTES + REFERENCE_OVERHEAD_BYTES
    buf = ReplayBuffer(TASKS, ReplayConfig(memory_budget_bytes=3 * one + one // 2))
    for i in range(10):
        buf.add(episode(3, i, "a"), [Relabel("a", i % 2 == 0, True)])
        assert buf.nbytes <= buf.config.memory_budget_bytes
    assert buf.num_episodes == 3 and buf.evicted_episodes == 7
    kept = sorted(int(e.episode.episode_id) for e in buf._episodes.values())
    assert kept == [7, 8, 9]  # oldest evicted first
    sizes = buf.buffer_sizes()["a"]
    assert (sizes["success_episodes"], sizes["failure_episodes"]) == (1, 2)
    ident = (buf.sample(500).image[:, 0, 0, 0].astype(int)) // 10
    assert set(ident.tolist()) == {7, 8, 9}
    # Shared episodes disappear from every buffer at once.
    buf.add(episode(3, 20, "b"), [Relabel("b", True, True), Relabel("c", False, False)])
    for _ in range(3):
        buf.add(episode(3, 30, "a"), [Relabel("a", True, True)])
    assert buf.buffer_sizes()["c"]["failure_episodes"] == 0
    assert buf.nbytes <= buf.config.memory_budget_bytes


def test_bad_input_is_refused():
    buf = ReplayBuffer(TASKS, ReplayConfig(memory_budget_bytes=1000))
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2)
    with pytest.raises(ValueError, match="budget"):
        buf.add(episode(3, 0, "a", size=16), [Relabel("a", True, True)])
    buf = ReplayBuffer(TASKS)
    buf.add(episode(2, 0, "a"), [Relabel("a", True, True)])
    with pytest.raises(ValueError, match="images"):
        buf.add(episode(2, 0, "a", size=8), [Relabel("a", True, True)])
    with pytest.raises(KeyError, match="zzz"):
        buf.add(episode(2, 0, "a"), [Relabel("zzz", True, True)])
    assert buf.add(episode(2, 0, "a"), []) == 0 and buf.num_episodes == 1
    with pytest.raises(ValueError, match="sampler"):
        ReplayConfig(sampler="greedy")
    with pytest.raises(ValueError, match="actions"):
        Episode(
            np.zeros((3, 4, 4, 3), np.uint8), np.zeros(3, bool), np.zeros(3), np.zeros((3, 6)), "a"
        )


def test_object_detected_defaults_to_false_and_is_validated():
    ep = episode(3)
    assert ep.object_detected.dtype == bool and ep.object_detected.shape == (4,)
    plain = Episode(ep.images, ep.gripper_closed, ep.height, ep.actions, "a")
    assert plain.object_detected.shape == (4,) and not plain.object_detected.any()
    with pytest.raises(ValueError, match="object_detected must have shape"):
        Episode(ep.images, ep.gripper_closed, ep.height, ep.actions, "a",
                object_detected=np.zeros(3, bool))  # fmt: skip


def test_batches_carry_step_index_steps_left_and_truncation():
    buf = ReplayBuffer(TASKS)
    ended_by_limit = episode(3, 1)  # no terminate bit: cut by the step limit
    terminated = episode(3, 2)
    terminated.actions[-1, 5] = 1.0
    assert not ended_by_limit.terminated and terminated.terminated
    buf.add(ended_by_limit, [Relabel("a", True, True)])
    buf.add(terminated, [Relabel("a", False, True)])
    batch = buf.sample(400, np.random.default_rng(0))
    ident, t = batch.image[:, 0, 0, 0] // 10, batch.image[:, 0, 0, 0] % 10
    np.testing.assert_array_equal(batch.step, t)  # observation t of its episode
    np.testing.assert_array_equal(batch.steps_left, 2 - t)  # 3-step episodes
    last = t == 2
    np.testing.assert_array_equal(batch.done, last.astype(np.float32))
    np.testing.assert_array_equal(batch.truncated, (last & (ident == 1)).astype(np.float32))
    assert batch.truncated.sum() > 0 and (batch.done - batch.truncated).sum() > 0
    tb = batch.to_torch()
    assert tb.step.dtype == torch.int64 and tb.truncated.shape == (400,)
