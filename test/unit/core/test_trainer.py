"""Trainer: one Bellman update + SGD step per call, target-network lag, gradient clipping,
TensorBoard scalars, checkpoint resume."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtopt_core.bellman import q_logits
from mtopt_core.cem import CEMConfig, CEMPolicy
from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, CheckpointError, read_checkpoint
from mtopt_core.episode import Episode
from mtopt_core.gridworld import GridWorld, GridWorldConfig, collect_episode
from mtopt_core.impersonation import AllImpersonation, Relabel
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import ReplayBuffer
from mtopt_core.tasks import parse_task_registry
from mtopt_core.trainer import BellmanUpdater, Trainer, TrainerConfig, mc_target_task_mask

NAMES = ("reach-red", "reach-green", "reach-blue", "reach-yellow")


@pytest.fixture(scope="module")
def replay():
    registry = parse_task_registry(
        {
            "skills": {"reach": "reach a cell"},
            "tasks": [{"name": n, "skill": "reach"} for n in NAMES],
        }  # fmt: skip
    )
    buf = ReplayBuffer(NAMES)
    env, rng = GridWorld(GridWorldConfig()), np.random.default_rng(0)
    for i in range(40):
        buf.add_episode(collect_episode(env, i % 4, rng, NAMES), AllImpersonation(registry))
    return buf


def make_trainer(replay, **kw):
    cfg = dict(batch_size=16, cem=CEMConfig(population=8, elites=2, iterations=2),
               progress=False, learning_rate=1e-3)  # fmt: skip
    cfg.update(kw)
    return Trainer(QNet(QNetConfig.tiny(4)), replay, TrainerConfig(**cfg))


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_targets_lag_the_online_network(replay):
    tr = make_trainer(replay, target_tau=0.25, target2_period=3)
    start = flat(tr.qnet)
    m = tr.step()
    assert m["step"] == 1 and np.isfinite(m["loss"]) and 0 <= m["target_mean"] <= 1
    online, t1 = flat(tr.qnet), flat(tr.target1)
    # target1 = 0.75 * old + 0.25 * new (Polyak); target2 not refreshed yet
    torch.testing.assert_close(t1, 0.75 * start + 0.25 * online)
    torch.testing.assert_close(flat(tr.target2), start)
    tr.step()
    tr.step()  # step 3: target2 <- target1
    torch.testing.assert_close(flat(tr.target2), flat(tr.target1))
    assert not torch.allclose(flat(tr.target1), flat(tr.qnet))
    tr.step()
    assert not torch.allclose(flat(tr.target2), flat(tr.target1))


def test_gradient_clipping(replay):
    tr = make_trainer(replay, grad_clip_norm=1e-3)
    m = tr.step()
    norm = torch.norm(torch.stack([p.grad.norm() for p in tr.qnet.parameters()]))
    assert m["grad_norm"] > 1e-3 and norm <= 1e-3 * 1.001


def test_tensorboard_scalars_and_resume(replay, tmp_path):
    tr = make_trainer(replay, log_dir=str(tmp_path / "tb"), log_every=2)
    tr.train(4)
    tr.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "replay/bytes", "replay/episodes"} <= tags
    assert {f"q/{n}" for n in NAMES} & tags
    assert {f"replay/{n}/success" for n in NAMES} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    # resume: weights, targets, optimizer state and step counter come back
    tr.save_checkpoint(tmp_path / "c.ckpt")
    other = make_trainer(replay)
    other.load_checkpoint(tmp_path / "c.ckpt")
    assert other.step_count == 4
    for a, b in ((other.qnet, tr.qnet), (other.target1, tr.target1), (other.target2, tr.target2)):
        torch.testing.assert_close(flat(a), flat(b))
    assert other.optimizer.state_dict()["state"][0]["step"] == 4


def test_weight_average_is_what_checkpoints_act_with_and_a_resume_trains_on(replay, tmp_path):
    tr = make_trainer(replay, average_tau=0.25)
    iterates = []
    for _ in range(4):
        tr.step()
        iterates.append(flat(tr.qnet))
    # the plain mean of the iterates while 1/t >= tau (steps 1-4), not the initial weights
    torch.testing.assert_close(flat(tr.average), torch.stack(iterates).mean(0))
    before = flat(tr.average)
    tr.step()
    torch.testing.assert_close(flat(tr.average), 0.75 * before + 0.25 * flat(tr.qnet))
    assert not torch.allclose(flat(tr.average), flat(tr.qnet))
    tr.save_checkpoint(tmp_path / "avg.ckpt")
    ckpt = read_checkpoint(tmp_path / "avg.ckpt")
    # The policy's weights are the average; the online ones ride along for a resume.
    torch.testing.assert_close(
        torch.cat([v.flatten() for v in ckpt.state_dict.values()]), flat(tr.average)
    )
    assert ckpt.metadata["average_tau"] == 0.25
    resumed = make_trainer(replay, average_tau=0.25)
    resumed.load_checkpoint(tmp_path / "avg.ckpt")
    torch.testing.assert_close(flat(resumed.qnet), flat(tr.qnet))
    torch.testing.assert_close(flat(resumed.average), flat(tr.average))
    # A run without averaging resumes from the online weights too.
    plain = make_trainer(replay)
    plain.load_checkpoint(tmp_path / "avg.ckpt")
    assert plain.average is None
    torch.testing.assert_close(flat(plain.qnet), flat(tr.qnet))
    # Weights alone (no training state): just the average.
    tr.save_checkpoint(tmp_path / "weights.ckpt", training_state=False)
    assert "online" not in read_checkpoint(tmp_path / "weights.ckpt").extra


def test_config_validation():
    with pytest.raises(ValueError, match="gamma"):
        TrainerConfig(gamma=1.5)
    with pytest.raises(ValueError, match="target_tau"):
        TrainerConfig(target_tau=0)
    with pytest.raises(ValueError, match="average_tau"):
        TrainerConfig(average_tau=1.5)


def test_cosine_learning_rate_decay(replay):
    tr = make_trainer(replay, learning_rate=1e-3, lr_decay_steps=100, lr_final_fraction=0.1)
    assert tr.learning_rate() == pytest.approx(1e-3)
    tr.step_count = 50
    assert tr.learning_rate() == pytest.approx(0.55e-3)
    tr.step_count = 100
    assert tr.learning_rate() == pytest.approx(1e-4)
    tr.step_count = 1000
    assert tr.learning_rate() == pytest.approx(1e-4)
    m = tr.step()
    assert m["learning_rate"] == pytest.approx(1e-4)
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def mean_q_of_random_actions(tr, replay, n=256):
    """Mean Q over n random actions at sampled replay states (in eval mode)."""
    batch = replay.sample(64, np.random.default_rng(5)).to_torch()
    gen = torch.Generator().manual_seed(3)
    tr.qnet.eval()
    with torch.no_grad():
        features = tr.qnet.trunk(batch.image)
        qs = []
        for _ in range(n // 64):
            actions = torch.rand(64, 6, generator=gen) * 2 - 1
            actions[:, 4:] = (actions[:, 4:] > 0).float()
            qs.append(torch.sigmoid(tr.qnet.head_logits(
                features, actions, batch.gripper_closed, batch.height, batch.task,
                batch.object_detected,
            )))  # fmt: skip
    return float(torch.cat(qs).mean())


def test_conservative_penalty_pushes_down_q_of_random_actions(replay):
    torch.manual_seed(0)
    plain = make_trainer(replay, seed=1)
    torch.manual_seed(0)
    conservative = make_trainer(replay, seed=1, conservative_weight=1.0, conservative_samples=4)
    for _ in range(60):
        m_plain, m_cons = plain.step(), conservative.step()
    assert m_plain["conservative_penalty"] is None
    assert m_cons["conservative_penalty"] > 0 and np.isfinite(m_cons["loss"])
    assert (
        mean_q_of_random_actions(conservative, replay)
        < mean_q_of_random_actions(plain, replay) - 0.05
    )


def test_conservative_config_validation():
    with pytest.raises(ValueError, match="conservative_weight"):
        TrainerConfig(conservative_weight=-0.1)
    with pytest.raises(ValueError, match="conservative_samples"):
        TrainerConfig(conservative_samples=0)


def mean_q_of_data_actions(tr, replay):
    batch = replay.sample(256, np.random.default_rng(5)).to_torch()
    tr.qnet.eval()
    with torch.no_grad():
        return float(torch.sigmoid(q_logits(tr.qnet, batch)).mean())


def test_relative_penalty_pushes_data_actions_up_and_random_ones_down(replay):
    # Means over two training seeds of 120 steps: one short run's gap moves with the CPU's
    # float kernels (measured 0.035-0.11 at 60 steps across seeds, threads and CPUs).
    results = {}
    for name, kw in (
        ("plain", {}),
        ("absolute", dict(conservative_weight=1.0)),
        ("relative", dict(conservative_weight=1.0, conservative_mode="relative")),
    ):
        runs = []
        for seed in (2, 3):
            torch.manual_seed(0)
            tr = make_trainer(replay, seed=seed, **kw)
            for _ in range(120):
                metrics = tr.step()
            assert np.isfinite(metrics["loss"])
            runs.append((mean_q_of_data_actions(tr, replay), mean_q_of_random_actions(tr, replay)))
        results[name] = tuple(np.mean(runs, axis=0))
    gap = {name: data - rand for name, (data, rand) in results.items()}
    # relative (CQL(H)): the data actions rise above the random ones
    assert gap["relative"] > gap["plain"] + 0.05, results
    # absolute: everything goes down, the data actions with the random ones
    assert results["absolute"][0] < results["plain"][0] - 0.1, results
    assert results["relative"][0] > results["absolute"][0] + 0.2, results


def test_relative_penalty_stays_bounded(replay):
    """On the logits, CQL(H)'s push on the data actions has no minimum against the bounded
    cross-entropy gradient (success rows' logits grow forever); on Q it settles."""
    torch.manual_seed(0)
    tr = make_trainer(replay, seed=1, conservative_weight=1.0, conservative_mode="relative")
    for _ in range(300):
        metrics = tr.step()
    assert -1.0 < metrics["conservative_penalty"] <= 1.0 and abs(metrics["loss"]) < 2.0
    batch = replay.sample(64, np.random.default_rng(1)).to_torch()
    with torch.no_grad():
        assert q_logits(tr.qnet.eval(), batch).abs().max() < 20


def test_penalty_values_on_a_constant_q(replay):
    """Q(s, a) = sigmoid(2) for every action: the relative penalty (logsumexp over random
    actions - log N - data action's logit) is 0, the absolute one softplus(2)."""
    batch = replay.sample(8, np.random.default_rng(0)).to_torch()
    for mode, expected in (("relative", 0.0), ("absolute", float(F.softplus(torch.tensor(2.0))))):
        tr = make_trainer(replay, conservative_weight=1.0, conservative_mode=mode)
        last = tr.qnet.shared_fc[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(2.0)
        features = tr.qnet.trunk(batch.image)
        penalty = tr._conservative_penalty(features, batch, q_logits(tr.qnet, batch, features))
        assert float(penalty.detach()) == pytest.approx(expected, abs=1e-5)


def test_conservative_weight_anneals_linearly_to_zero(replay):
    tr = make_trainer(replay, conservative_weight=0.8, conservative_anneal_steps=4)
    weights, penalties = [], []
    for _ in range(6):
        weights.append(tr.conservative_weight())
        penalties.append(tr.step()["conservative_penalty"])
    assert weights == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
    assert all(p is not None for p in penalties[:4]) and penalties[4:] == [None, None]
    assert make_trainer(replay, conservative_weight=0.8).conservative_weight() == 0.8


def test_learning_option_validation():
    with pytest.raises(ValueError, match="conservative_mode"):
        TrainerConfig(conservative_mode="soft")
    with pytest.raises(ValueError, match="conservative_anneal_steps"):
        TrainerConfig(conservative_anneal_steps=-1)
    with pytest.raises(ValueError, match="augment_shift_px"):
        TrainerConfig(augment_shift_px=-2)


def noise_replay(size=12, episodes=6, steps=3):
    """Episodes of random-noise images (a shifted image identifies its offset), the first
    half ended by the step limit, the others by terminate."""
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(NAMES)
    for i in range(episodes):
        actions = rng.uniform(-1, 1, (steps, 6)).astype(np.float32)
        actions[:, 4:] = 0.0
        actions[-1, 5] = float(i >= episodes // 2)
        ep = Episode(
            images=rng.integers(0, 256, (steps + 1, size, size, 3), dtype=np.uint8),
            gripper_closed=np.zeros(steps + 1, bool), height=np.full(steps + 1, 0.1),
            actions=actions, task=NAMES[i % 4], labels={}, episode_id=str(i),
        )  # fmt: skip
        buf.add(ep, [Relabel(NAMES[i % 4], False, True)])
    return buf


def shift_of(shifted, original, pad):
    padded = np.pad(original, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = original.shape[:2]
    hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
            if np.array_equal(padded[dy : dy + h, dx : dx + w], shifted)]  # fmt: skip
    assert len(hits) == 1
    return hits[0]


def test_drq_shift_of_s_and_next_s_independently_per_transition():
    buf = noise_replay()
    net = QNet(QNetConfig.tiny(4, image_size=12))
    plain = BellmanUpdater(buf, net, net, 0.9, CEMConfig(8, 2, 1), seed=3)
    shifted = BellmanUpdater(buf, net, net, 0.9, CEMConfig(8, 2, 1), seed=3, augment_shift_px=2)
    a, _ = plain.next_batch(32)
    b, _ = shifted.next_batch(32)
    # the same transitions are sampled (augmentation draws from its own generator)
    torch.testing.assert_close(a.action, b.action)
    offsets = [
        (shift_of(b.image[r].numpy(), a.image[r].numpy(), 2),
         shift_of(b.next_image[r].numpy(), a.next_image[r].numpy(), 2))
        for r in range(32)
    ]  # fmt: skip
    assert len({s for s, _ in offsets}) > 8  # per transition
    assert sum(s != n for s, n in offsets) > 16  # s and s' shifted independently
    tr = Trainer(net, buf, TrainerConfig(batch_size=8, cem=CEMConfig(8, 2, 1), progress=False,
                                         augment_shift_px=2))  # fmt: skip
    assert tr.updater.augment_shift_px == 2 and np.isfinite(tr.step()["loss"])


def test_truncation_bootstrap_reaches_the_targets():
    buf = noise_replay()
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(4, image_size=12))
    cem = CEMConfig(8, 2, 1)
    targets = {}
    for flag in (False, True):
        up = BellmanUpdater(buf, net, net, 0.9, cem, seed=3, bootstrap_truncation=flag)
        batch, t = up.next_batch(64)
        targets[flag] = (batch, t)
    batch, off = targets[False]
    _, on = targets[True]
    truncated = batch.truncated > 0.5
    terminated = (batch.done > 0.5) & ~truncated
    assert truncated.any() and terminated.any()
    assert torch.all(off[truncated] == 0)  # failures that ended: reward only
    assert torch.all(on[truncated] > 0.1)  # bootstrapped from V(s') (about 0.9 * 0.5 at init)
    assert torch.all(on[terminated] == 0)  # a terminate still ends the bootstrap
    # the other rows keep their targets (up to CEM draws: more rows now share the generator)
    torch.testing.assert_close(on[~truncated], off[~truncated], atol=0.01, rtol=0)


def test_mc_target_tasks_give_their_tasks_returns_and_the_others_bellman_targets():
    buf = noise_replay()  # every episode a failure: its returns are 0
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(4, image_size=12))
    cfg = TrainerConfig(batch_size=8, cem=CEMConfig(8, 2, 1), progress=False,
                        mc_target_tasks=("reach-r*", "reach-blue"))  # fmt: skip
    trainer = Trainer(net, buf, cfg)
    assert trainer.updater.mc_task_mask.tolist() == [True, False, True, False]
    batch, targets = trainer.updater.next_batch(64)
    mc = (batch.task == 0) | (batch.task == 2)
    live = batch.done < 0.5
    assert (mc & live).any() and (~mc & live).any()
    assert torch.all(targets[mc] == 0)  # their return, not the bootstrap
    assert torch.all(targets[~mc & live] > 0.1)  # gamma * V(s'), about 0.9 * 0.5 at init
    assert mc_target_task_mask(("*",), NAMES) == [True] * 4
    with pytest.raises(ValueError, match="'lift-\\*' matches no task; tasks: reach-red"):
        Trainer(net, buf, TrainerConfig(progress=False, mc_target_tasks=("lift-*",)))
    with pytest.raises(ValueError, match="mc_target_tasks must be non-empty fnmatch"):
        TrainerConfig(mc_target_tasks=("",))


def test_step_input_network_trains_and_acts_with_the_step():
    buf = noise_replay()
    net = QNet(QNetConfig.tiny(4, image_size=12, step_horizon=3))
    tr = Trainer(net, buf, TrainerConfig(batch_size=8, cem=CEMConfig(8, 2, 1), progress=False,
                                         conservative_weight=0.5))  # fmt: skip
    assert np.isfinite(tr.step()["loss"])
    policy = CEMPolicy(net.eval(), CEMConfig(8, 2, 1))
    image = np.zeros((1, 12, 12, 3), np.uint8)
    _, q0 = policy.act(image, [False], [0.1], [0], step=[0])
    assert 0.0 <= q0[0] <= 1.0
    with pytest.raises(ValueError, match="step"):
        policy.act(image, [False], [0.1], [0])


def test_checkpoints_record_the_policy_settings_and_a_run_for_others_refuses_them(
    replay, tmp_path
):
    tool = (("policy_camera", "wrist"), ("policy_roi", [0.0, 0.0, 1.0, 1.0]),
            ("action_frame", "tool"))  # fmt: skip
    tr = make_trainer(replay, policy_settings=tool)
    tr.train(2)
    tr.save_checkpoint(tmp_path / "tool.ckpt")
    recorded = read_checkpoint(tmp_path / "tool.ckpt").metadata[POLICY_SETTINGS_KEY]
    assert recorded == dict(tool)
    # resuming with the same settings works; with another action frame it is refused, and the
    # refusing trainer keeps its own weights
    make_trainer(replay, policy_settings=tool).load_checkpoint(tmp_path / "tool.ckpt")
    base = make_trainer(replay, policy_settings=tool[:2] + (("action_frame", "base"),))
    before = flat(base.qnet).clone()
    with pytest.raises(CheckpointError, match=r"trained for action_frame 'tool' .*'base'"):
        base.load_checkpoint(tmp_path / "tool.ckpt")
    torch.testing.assert_close(flat(base.qnet), before)
    assert base.step_count == 0
    # a trainer without settings writes none, and its checkpoints load anywhere
    make_trainer(replay).save_checkpoint(tmp_path / "plain.ckpt")
    assert POLICY_SETTINGS_KEY not in read_checkpoint(tmp_path / "plain.ckpt").metadata
    base.load_checkpoint(tmp_path / "plain.ckpt")


def test_mirror_reflects_s_next_s_and_the_action_of_the_same_transitions():
    buf = noise_replay()
    net = QNet(QNetConfig.tiny(4, image_size=12))
    plain = BellmanUpdater(buf, net, net, 0.9, CEMConfig(8, 2, 1), seed=3)
    mirrored = BellmanUpdater(buf, net, net, 0.9, CEMConfig(8, 2, 1), seed=3, augment_mirror=True)
    a, _ = plain.next_batch(64)
    b, _ = mirrored.next_batch(64)
    torch.testing.assert_close(a.task, b.task)  # the same transitions (own generator)
    flipped = ~torch.isclose(a.action[:, 1], b.action[:, 1])
    assert 16 < int(flipped.sum()) < 48  # about half of the rows
    for r in range(64):
        f = bool(flipped[r])
        image, next_image = a.image[r], a.next_image[r]
        if f:
            image, next_image = image.flip(1), next_image.flip(1)  # left-right
        assert torch.equal(b.image[r], image) and torch.equal(b.next_image[r], next_image)
        sign = torch.tensor([1, -1 if f else 1, 1, -1 if f else 1, 1, 1], dtype=torch.float32)
        torch.testing.assert_close(b.action[r], a.action[r] * sign)
    for name in ("reward", "done", "height", "gripper_closed"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    tr = Trainer(net, buf, TrainerConfig(batch_size=8, cem=CEMConfig(8, 2, 1), progress=False,
                                         augment_mirror=True))  # fmt: skip
    assert tr.updater.augment_mirror and np.isfinite(tr.step()["loss"])


def test_translation_relabels_s_and_the_action_and_keeps_next_s_and_the_target_inputs():
    buf = noise_replay()
    net = QNet(QNetConfig.tiny(4, image_size=12))
    plain = BellmanUpdater(buf, net, net, 0.9, CEMConfig(8, 2, 1), seed=3)
    moved = BellmanUpdater(buf, net, net, 0.9, CEMConfig(8, 2, 1), seed=3, augment_translate=1.0)
    a, _ = plain.next_batch(64)
    b, _ = moved.next_batch(64)
    for name in ("task", "next_image", "reward", "done", "height", "gripper_closed"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    changed = ~torch.isclose(a.action[:, :2], b.action[:, :2]).all(dim=1)
    assert changed.any()
    assert not torch.equal(a.image[changed], b.image[changed])
    torch.testing.assert_close(a.action[:, 2:], b.action[:, 2:])
    tr = Trainer(net, buf, TrainerConfig(batch_size=8, cem=CEMConfig(8, 2, 1), progress=False,
                                         augment_translate=0.5))  # fmt: skip
    assert tr.updater.translate is not None and np.isfinite(tr.step()["loss"])


def grasp_replay(episodes=16, size=12):
    """One close per episode from a red or a blue scene; only the red closes catch an object
    (the next observation's object-detected flag)."""
    buf = ReplayBuffer(NAMES)
    for i in range(episodes):
        red = i % 2 == 0
        images = np.zeros((3, size, size, 3), np.uint8)
        images[..., 0 if red else 2] = 200
        actions = np.zeros((2, 6), np.float32)
        actions[:, 4] = 1.0  # close, then move while closed
        actions[1, 5] = 1.0
        ep = Episode(
            images=images, gripper_closed=np.array([False, True, True]),
            height=np.full(3, 0.1), actions=actions, task=NAMES[0], labels={},
            episode_id=str(i), object_detected=np.array([False, red, red]),
        )  # fmt: skip
        buf.add(ep, [Relabel(NAMES[0], red, True)])
    return buf


def test_grasp_head_learns_whether_the_close_caught_an_object():
    buf = grasp_replay()
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(4, image_size=12, grasp_head=True))
    tr = Trainer(net, buf, TrainerConfig(batch_size=16, cem=CEMConfig(8, 2, 1), progress=False,
                                         learning_rate=3e-3, grasp_weight=1.0))  # fmt: skip
    for _ in range(150):
        metrics = tr.step()
    assert metrics["grasp_loss"] < 0.2
    images = np.zeros((2, 12, 12, 3), np.uint8)
    images[0, ..., 0] = images[1, ..., 2] = 200
    close = torch.tensor([[0, 0, 0, 0, 1, 0]] * 2, dtype=torch.float32)
    with torch.no_grad():
        q, grasp = net.eval().head_outputs(
            net.trunk(torch.from_numpy(images)), close, torch.zeros(2), torch.full((2,), 0.1),
            torch.zeros(2, dtype=torch.long), torch.zeros(2),
        )  # fmt: skip
    p_red, p_blue = torch.sigmoid(grasp).tolist()
    assert p_red > 0.8 and p_blue < 0.2
    assert q.shape == (2,)


def test_grasp_weight_needs_a_grasp_head_and_old_configs_have_none(replay):
    with pytest.raises(ValueError, match="grasp_head=true"):
        make_trainer(replay, grasp_weight=0.5)
    with pytest.raises(ValueError, match="grasp_weight"):
        TrainerConfig(grasp_weight=-1.0)
    with pytest.raises(ValueError, match="multi_head"):
        QNetConfig.tiny(4, grasp_head=True, multi_head=True)
    data = QNetConfig.tiny(4).to_dict()
    del data["grasp_head"]
    assert QNetConfig.from_dict(data).grasp_head is False
    assert make_trainer(replay).step()["grasp_loss"] is None
