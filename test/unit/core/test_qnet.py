"""Q-network (seed Fig. 9): layer structure, trunk/head split, presets, multi-headed variant."""

import pytest
import torch
from torch import nn

from mtopt_core.qnet import QNet, QNetConfig, expand_features


def _inputs(cfg, b):
    g = torch.Generator().manual_seed(1)
    s = cfg.image_size
    return (
        torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, generator=g),
        torch.rand(b, 6, generator=g) * 2 - 1,
        (torch.rand(b, generator=g) > 0.5).float(),
        torch.rand(b, generator=g) * 0.3,
        torch.randint(0, cfg.num_tasks, (b,), generator=g),
    )


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("multi_head", [False, True])
def test_structure_7_conv_trunk_9_conv_head(multi_head):
    net = QNet(QNetConfig.small(12, multi_head=multi_head))
    assert len(_convs(net.trunk_layers)) == 7
    assert len(_convs(net.head_convs)) == 9
    if not multi_head:
        assert len([m for m in net.shared_fc if isinstance(m, nn.Linear)]) == 2


@pytest.mark.parametrize(
    "cfg",
    [
        QNetConfig.tiny(4),
        QNetConfig.compact(4),
        QNetConfig.small(12),
        QNetConfig.small(12, multi_head=True, norm="group"),
    ],
    ids=["tiny", "compact", "small", "small-multihead-groupnorm"],
)
def test_forward_is_trunk_then_head_and_in_unit_interval(cfg):
    net = QNet(cfg).eval()
    images, action, grip, height, task = _inputs(cfg, 5)
    with torch.no_grad():
        q = net(images, action, grip, height, task)
        features = net.trunk(images)
        side = cfg.feature_size()
        assert features.shape == (5, cfg.channels, side, side)
        q_split = net.head(features, action, grip, height, task)
    assert q.shape == (5,)
    assert torch.all((q > 0) & (q < 1))
    torch.testing.assert_close(q, q_split)
    # Broadcasting: the features of one state, expanded, give that state's Q for every action.
    with torch.no_grad():
        q_b = net.head(
            expand_features(features[:1], 5), action, grip[:1].expand(5), height[:1].expand(5),
            task[:1].expand(5),
        )  # fmt: skip
        q_full = net(images[:1].expand(5, -1, -1, -1), action, grip[:1].expand(5),
                     height[:1].expand(5), task[:1].expand(5))  # fmt: skip
    torch.testing.assert_close(q_b, q_full)


def test_q_depends_on_action_task_and_gripper_inputs():
    cfg = QNetConfig.tiny(4)
    net = QNet(cfg).eval()
    images, action, grip, height, task = _inputs(cfg, 4)
    with torch.no_grad():
        base = net(images, action, grip, height, task)
        assert not torch.allclose(base, net(images, -action, grip, height, task))
        assert not torch.allclose(base, net(images, action, 1 - grip, height, task))
        assert not torch.allclose(base, net(images, action, grip, height + 0.2, task))
        assert not torch.allclose(base, net(images, action, grip, height, (task + 1) % 4))


@pytest.mark.parametrize("multi_head", [False, True])
def test_state_skip_feeds_the_fused_state_past_the_head_convs(multi_head):
    for skip in (False, True):
        cfg = QNetConfig.tiny(3, state_skip=skip, multi_head=multi_head)
        net = QNet(cfg).eval()
        images, action, grip, height, task = _inputs(cfg, 4)
        # With the head convs silenced, only the skip path can carry the action to the output.
        with torch.no_grad():
            for conv in _convs(net.head_convs):
                conv.weight.zero_()
            a = net(images, action, grip, height, task)
            b = net(images, -action, grip, height, task)
        assert torch.allclose(a, b) != skip
    assert QNetConfig.from_dict(QNetConfig.tiny(3, state_skip=True).to_dict()).state_skip


def test_multi_head_reads_each_task_from_its_own_head():
    cfg = QNetConfig.tiny(3, multi_head=True)
    net = QNet(cfg).eval()
    images, action, grip, height, _ = _inputs(cfg, 6)
    task = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        before = net(images, action, grip, height, task)
        net.mh_b3[1] += 5.0  # only task 1's output bias
        after = net(images, action, grip, height, task)
    changed = ~torch.isclose(before, after)
    assert changed.tolist() == [False, True, False, False, True, False]


def test_paper_preset_matches_qtopt_sizes():
    cfg = QNetConfig.paper(12)
    assert cfg.image_size == 472 and cfg.channels == 64
    assert cfg.feature_size() == 26 and cfg.head_output_size() == 13
    net = QNet(cfg).eval()
    images, action, grip, height, task = _inputs(cfg, 1)
    with torch.no_grad():
        assert net.trunk(images).shape == (1, 64, 26, 26)
        assert net(images, action, grip, height, task).shape == (1,)


def test_bad_inputs_and_configs_are_refused():
    net = QNet(QNetConfig.tiny(2))
    with pytest.raises(ValueError, match="16x16"):
        net.trunk(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        net.trunk(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    feats = net.trunk(torch.zeros(2, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="action"):
        net.head(feats, torch.zeros(2, 5), torch.zeros(2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="num_tasks"):
        QNetConfig(num_tasks=0)
    with pytest.raises(ValueError, match="norm"):
        QNetConfig(num_tasks=2, norm="batch")
    with pytest.raises(ValueError, match="too small"):
        QNetConfig(num_tasks=2, image_size=8)
    cfg = QNetConfig.small(3)
    assert QNetConfig.from_dict(cfg.to_dict()) == cfg


def test_object_detected_is_an_input_and_old_configs_load_without_it():
    cfg = QNetConfig.tiny(4)
    assert cfg.object_detected_input
    net = QNet(cfg).eval()
    images, action, grip, height, task = _inputs(cfg, 4)
    detected = torch.tensor([0.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        base = net(images, action, grip, height, task, detected)
        assert not torch.allclose(base, net(images, action, grip, height, task, 1 - detected))
        # None means "not reported": the same as all zeros
        torch.testing.assert_close(
            net(images, action, grip, height, task),
            net(images, action, grip, height, task, torch.zeros(4)),
        )
    # A config saved before the input existed has no such key: the net is built without it,
    # so its weights (one input column fewer in the first fuse layer) load.
    old = cfg.to_dict()
    del old["object_detected_input"]
    old_cfg = QNetConfig.from_dict(old)
    assert not old_cfg.object_detected_input
    old_net = QNet(old_cfg).eval()
    width = old_net.fuse_layers[0].in_features
    assert width == net.fuse_layers[0].in_features - 1
    with torch.no_grad():
        torch.testing.assert_close(
            old_net(images, action, grip, height, task, detected),
            old_net(images, action, grip, height, task, 1 - detected),
        )


def test_step_input_is_the_steps_remaining_and_required():
    cfg = QNetConfig.tiny(4, step_horizon=10)
    net = QNet(cfg).eval()
    plain = QNet(QNetConfig.tiny(4))
    assert net.fuse_layers[0].in_features == plain.fuse_layers[0].in_features + 1
    images, action, grip, height, task = _inputs(cfg, 4)
    with torch.no_grad():
        early = net(images, action, grip, height, task, None, torch.zeros(4))
        late = net(images, action, grip, height, task, None, torch.full((4,), 9))
        assert not torch.allclose(early, late)
        # (H - t) / H is clipped to [0, 1]: past the horizon every step looks like the last
        torch.testing.assert_close(
            net(images, action, grip, height, task, None, torch.full((4,), 10)),
            net(images, action, grip, height, task, None, torch.full((4,), 15)),
        )
    with pytest.raises(ValueError, match="step"):
        net(images, action, grip, height, task)
    with pytest.raises(ValueError, match="step"):
        QNetConfig.tiny(4, step_horizon=-1)
    # a net without the input ignores a step
    with torch.no_grad():
        torch.testing.assert_close(
            plain(images, action, grip, height, task, None, torch.zeros(4)),
            plain(images, action, grip, height, task),
        )
    assert QNetConfig.from_dict(cfg.to_dict()) == cfg


def _first_head_block_preactivation(net, images, action, grip, height, task):
    """The input of the first head ReLU (where the fused state ends up in either layout)."""
    acts = {}
    relu = [m for m in net.head_convs if isinstance(m, nn.ReLU)][0]

    def keep(_module, inputs) -> None:  # returns None: the ReLU still gets its own input
        acts["x"] = inputs[0].clone()

    hook = relu.register_forward_pre_hook(keep)
    with torch.no_grad():
        net(images, action, grip, height, task)
    hook.remove()
    return acts["x"]


def test_compact_fuses_the_state_after_the_first_head_groupnorm():
    """GroupNorm right after the additive fusion removes each channel group's mean of the fused
    (spatially constant) state vector; the compact preset adds it after that norm instead."""
    new = QNetConfig.compact(4, image_size=32)
    assert new.fuse_after_norm and new.norm == "group"
    old = QNetConfig.compact(4, image_size=32, fuse_after_norm=False)
    images, _, grip, height, task = _inputs(new, 1)
    images, grip, height, task = (x.expand(16, *x.shape[1:]) for x in (images, grip, height, task))
    actions = torch.rand(16, 6, generator=torch.Generator().manual_seed(2)) * 2 - 1
    group_means = {}
    for name, cfg in (("old", old), ("new", new)):
        torch.manual_seed(0)
        net = QNet(cfg).eval()
        x = _first_head_block_preactivation(net, images, actions, grip, height, task)
        b, c = x.shape[:2]
        group_means[name] = x.reshape(b, 8, c // 8, -1).mean(dim=(2, 3))  # GroupNorm's groups
    # Old layout: whatever the action, every group's mean is exactly the norm's bias (0).
    assert group_means["old"].abs().max() < 1e-5
    # New layout: the group means carry the action (they differ between actions).
    assert group_means["new"].std(dim=0).mean() > 1e-3
    with pytest.raises(ValueError, match="fuse_after_norm"):
        QNetConfig.tiny(4, fuse_after_norm=True)  # needs norm "group"


@pytest.mark.parametrize("state_skip", [True, False])
def test_compact_q_is_sensitive_to_the_action_at_init(state_skip):
    """The spread of Q over actions for one state is a sizeable fraction of its spread over
    states, even through the head convs alone (state_skip off)."""
    cfg = QNetConfig.compact(12, image_size=64, state_skip=state_skip)
    ratios = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = QNet(cfg).eval()
        images = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8)
        n = 32
        features = expand_features(net.trunk(images), n)
        action = torch.rand(8 * n, 6) * 2 - 1
        action[:, 4:] = (action[:, 4:] > 0).float()
        zeros = torch.zeros(8 * n)
        with torch.no_grad():
            logits = net.head_logits(features, action, zeros, zeros + 0.1, zeros.long()).reshape(
                8, n
            )
        ratios.append(float(logits.std(dim=1).mean() / logits.mean(dim=1).std()))
    assert min(ratios) > 0.05, ratios


def test_old_checkpoint_configs_keep_the_original_fusion():
    cfg = QNetConfig.compact(4, image_size=32)
    saved = cfg.to_dict()
    del saved["fuse_after_norm"]
    assert not QNetConfig.from_dict(saved).fuse_after_norm
    assert QNetConfig.from_dict(cfg.to_dict()) == cfg


def test_position_embedding_starts_at_zero_and_adds_a_map_where_the_state_is_fused():
    cfg = QNetConfig.compact(4, image_size=32, state_skip=False)
    with_map = QNetConfig.compact(4, image_size=32, state_skip=False, position_embedding=True)
    torch.manual_seed(0)
    plain = QNet(cfg).eval()
    net = QNet(with_map).eval()
    missing = net.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["position"]
    s = with_map.feature_size()
    assert net.position.shape == (1, with_map.channels, s, s)
    inputs = _inputs(cfg, 6)
    with torch.no_grad():
        # Zero at the start: the same function as the network without it.
        assert torch.equal(net(*inputs), plain(*inputs))
        net.position[0, :, 0, 0] = 5.0  # one position gets a bias: Q changes
        assert not torch.allclose(net(*inputs), plain(*inputs))
    saved = with_map.to_dict()
    del saved["position_embedding"]  # a checkpoint from before the option
    assert not QNetConfig.from_dict(saved).position_embedding


def test_the_keypoint_head_reads_where_a_feature_is_and_splits_like_the_conv_head():
    cfg = QNetConfig.compact(4, image_size=32, state_skip=False, spatial_softmax=True)
    torch.manual_seed(0)
    net = QNet(cfg).eval()
    assert len(net.head_convs) == 0
    s = cfg.feature_size()
    features = torch.zeros(2, cfg.channels, s, s)
    features[0, 3, 1, s - 2] = 30.0  # a peak: channel 3's keypoint goes there
    keypoints = net._keypoints(features)
    c = cfg.channels
    grid = torch.linspace(-1.0, 1.0, s)
    assert keypoints[0, 3].item() == pytest.approx(grid[s - 2].item(), abs=1e-3)  # x
    assert keypoints[0, c + 3].item() == pytest.approx(grid[1].item(), abs=1e-3)  # y
    assert keypoints[1, 3].item() == pytest.approx(0.0, abs=1e-6)  # flat map: the centre
    images, action, closed, height, task = _inputs(cfg, 6)
    with torch.no_grad():
        whole = net(images, action, closed, height, task)
        split = torch.sigmoid(net.head_logits(net.trunk(images), action, closed, height, task))
    assert torch.allclose(whole, split)
    q = net(images, action, closed, height, task)
    q.sum().backward()
    assert net.trunk_layers[0].weight.grad.abs().sum() > 0  # the image reaches Q
    assert QNetConfig.from_dict(cfg.to_dict()) == cfg
    assert set(net.state_dict()) == set(QNet(cfg).state_dict())  # no grid buffers saved
