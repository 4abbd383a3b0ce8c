"""The gymnasium env: spaces, registration, determinism, episode semantics, limits."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import mtopt_sim
from mtopt_core.action import ActionSpec
from mtopt_experiments.evaluate_scripted import acquire_object
from mtopt_sim.env import EnvConfig, MTOptCell


def _random_actions(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    actions = []
    for k in range(n):
        a = rng.uniform(-1, 1, 6).astype(np.float32)
        a[4] = float(k >= n // 2)  # close half way
        a[5] = float(k == n - 1)
        actions.append(a)
    return actions


def test_registered_and_spaces():
    e = gym.make(mtopt_sim.ENV_ID, image_size=32, cell_id=2, max_steps=3)
    try:
        obs, info = e.reset(seed=1)
        assert e.observation_space.contains(obs)
        assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
        assert e.action_space.shape == (6,)
        assert e.unwrapped.config.cell.cell_id == 2
        # Step limit: truncation after max_steps without terminate.
        for _ in range(3):
            obs, reward, terminated, truncated, info = e.step(np.zeros(6, np.float32))
        assert truncated and not terminated
        assert set(info["oracle"]) == set(info["task_names"]) and len(info["oracle"]) == 12
        with pytest.raises(RuntimeError, match="reset"):
            e.step(np.zeros(6, np.float32))
    finally:
        e.close()
    with pytest.raises(TypeError, match="unknown MTOptCell options"):
        MTOptCell(image_sise=32)


def test_passes_the_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env

    e = gym.make(mtopt_sim.ENV_ID, image_size=32, max_steps=4)
    try:
        # Includes: reset(seed) twice + the same action -> the same observation; render modes.
        check_env(e.unwrapped)
    finally:
        e.close()


def test_same_seed_same_actions_bit_identical():
    runs = []
    for _ in range(2):
        e = MTOptCell(EnvConfig(image_size=48))
        obs, _ = e.reset(seed=7)
        trace = [obs]
        for action in _random_actions(8, seed=3):
            obs, _, terminated, truncated, info = e.step(action)
            trace.append(obs)
        assert terminated
        sd = e.render_sd_cameras(64)
        runs.append((trace, info["oracle"], info["oracle_detail"], sd, e.cell.data.qpos.copy()))
        e.close()
    (a, oa, da, sda, qa), (b, ob, db, sdb, qb) = runs
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        assert x["gripper_closed"] == y["gripper_closed"]
        np.testing.assert_array_equal(x["gripper_height"], y["gripper_height"])
    assert oa == ob and da == db
    for name in sda:
        np.testing.assert_array_equal(sda[name], sdb[name])
    np.testing.assert_array_equal(qa, qb)
    # The images are not trivially constant (the arm moved in view).
    assert not np.array_equal(a[0]["image"], a[-1]["image"])


def test_reset_keeps_the_physical_state_and_a_held_object(env):
    env.respawn(seed=11)
    assert acquire_object(env, np.random.default_rng(0)), "scripted pick never held anything"
    held = env.cell.held_objects()
    positions = {i: env.cell.object_position(i) for i in env.cell.active_objects}
    obs, _ = env.reset()
    assert env.cell.held_objects() == held
    assert obs["gripper_closed"] == 1
    assert obs["object_detected"] == 1  # the fingers stopped on the held object
    for i, pos in positions.items():
        np.testing.assert_allclose(env.cell.object_position(i), pos, atol=1e-9)
    # A terminate step right away: the lift is still a success at this episode's end.
    spec = ActionSpec()
    _, _, terminated, _, info = env.step(spec.from_physical([0, 0, 0], 0.0, True, True))
    assert terminated and info["oracle"]["lift-any"]
    # Explicit full scene reset: new objects, nothing held, gripper open.
    env.respawn(seed=11)
    assert env.cell.held_objects() == [] and not env.cell.gripper_closed
    assert env.reset()[0]["object_detected"] == 0


def test_respawn_is_seeded(env):
    a = env.respawn(seed=5)
    qa = env.cell.data.qpos.copy()
    b = env.respawn(seed=5)
    assert a == b
    np.testing.assert_array_equal(qa, env.cell.data.qpos)
    c = [env.respawn(seed=s) for s in (6, 8, 9)]
    assert any(x != a for x in c)


def test_workspace_box_and_joint_limits_are_enforced(env):
    env.respawn(seed=2)
    env.reset(options={"start": "home"})
    box = env.cell.config.workspace
    floor = env.cell.floor_z
    clamped = False
    for direction in ([1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, -1, 1]):
        for _ in range(8):
            a = np.array([*direction, 0, 0], np.float32)
            obs, _, _, _, info = env.step(a)
            clamped |= info["clamped"]
            pos, yaw = env.cell.tcp_pose()
            assert box.x[0] - 0.01 <= pos[0] <= box.x[1] + 0.01
            assert box.y[0] - 0.01 <= pos[1] <= box.y[1] + 0.01
            assert floor + box.height[0] - 0.01 <= pos[2] <= floor + box.height[1] + 0.01
            assert box.yaw[0] - 0.02 <= yaw <= box.yaw[1] + 0.02
            q = env.cell.arm_qpos()
            assert np.all(q >= env.cell.arm_range[:, 0]) and np.all(q <= env.cell.arm_range[:, 1])
        env.reset()
    assert clamped


def test_each_step_moves_by_the_scaled_action(env):
    env.respawn(seed=3)
    env.reset(options={"start": [0.56, 0.0, env.cell.floor_z + 0.25], "start_yaw": 0.0})
    spec = env.config.action_spec
    before, yaw0 = env.cell.tcp_pose()
    env.step(np.array([0.5, -0.4, 0.6, 0.8, 0, 0], np.float32))
    after, yaw1 = env.cell.tcp_pose()
    expected = np.array([0.5, -0.4, 0.6]) * spec.max_translation_m
    np.testing.assert_allclose(after - before, expected, atol=0.003)
    assert yaw1 - yaw0 == pytest.approx(0.8 * spec.max_yaw_rad, abs=0.01)


def test_bad_inputs_are_rejected(env):
    env.reset()
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0], np.float32))
    with pytest.raises(ValueError, match="6 components"):
        env.step(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"teleport": True})
    with pytest.raises(KeyError, match="unknown task"):
        env.reset(options={"task": "lift-pineapple"})
    with pytest.raises(ValueError, match="start"):
        env.reset(options={"start": [0.5, 0.0]})
    with pytest.raises(ValueError, match="policy_camera"):
        EnvConfig(policy_camera="elbow")


def test_sd_cameras_and_cell_variation():
    images = {}
    for cell_id in (0, 4):
        e = MTOptCell(EnvConfig(cell=EnvConfig().cell.__class__(cell_id=cell_id)))
        e.reset(seed=1)
        images[cell_id] = e.render_sd_cameras(64)
        e.close()
    assert set(images[0]) == {"overhead", "left_shoulder", "right_shoulder"}
    for name, img in images[0].items():
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        diff = np.abs(img.astype(int) - images[4][name].astype(int)).mean()
        assert diff > 5.0, f"{name}: cells 0 and 4 look the same (mean diff {diff:.1f})"


def test_the_wrist_camera_sees_the_fingers_close():
    """The wrist camera rides on the gripper: closing the fingers changes its view (they are
    in it) while the overhead camera, far away, barely changes."""
    env = MTOptCell(EnvConfig(policy_camera="wrist", image_size=64))
    try:
        env.respawn(3)
        env.reset(options={"start": [0.56, -0.155, 0.21], "task": "lift-any"})
        before = {c: env.cell.render(c, 64, 64).astype(int) for c in ("wrist", "overhead")}
        env.cell.actuate_gripper(True)
        after = {c: env.cell.render(c, 64, 64).astype(int) for c in ("wrist", "overhead")}
        change = {c: np.abs(after[c] - before[c]).mean() for c in before}
        assert change["wrist"] > 5 * max(change["overhead"], 0.1), change
    finally:
        env.close()
