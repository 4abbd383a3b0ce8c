"""The learning options (augmentation, conservative mode and anneal, truncation bootstrap, step
input, policy region of interest and action frame, the targets' CEM) from LearnerConfig,
config/learner.yaml and mtopt-learn's flags to the Trainer, the network and the episode
decoder."""

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from mtopt_bridge.params import config_from_params_files
from mtopt_core.cem import CEMConfig
from mtopt_core.checkpoint import read_checkpoint
from mtopt_core.images import policy_image
from mtopt_core.trainer import TrainerConfig
from mtopt_learner.config import LearnerConfig, LearnerConfigError, OfflineConfig
from mtopt_learner.episode_decoder import episode_from_bag
from mtopt_learner.errors import LearnError
from mtopt_learner.learner import Learner
from mtopt_learner.nets import preset_config, preset_name
from mtopt_learner.offline import build_parser

CONFIG = Path(__file__).resolve().parents[3] / "config"
OPTIONS = dict(
    conservative_weight=0.5, conservative_mode="relative", conservative_anneal_steps=100,
    augment_shift_px=4, bootstrap_truncation=True, mc_lower_bound=True, mc_targets=True,
    mc_target_tasks=("lift-*", "place-any"), grasp_weight=0.5, lr_decay_steps=100,
    lr_final_fraction=0.2, average_tau=0.01,
)  # fmt: skip
ROI = (0.25, 0.0, 0.75, 1.0)


def test_learner_yaml_keeps_the_defaults_and_lists_every_new_option():
    """config/learner.yaml, LearnerConfig and mtopt-learn share the measured defaults."""
    cfg = config_from_params_files(LearnerConfig(), [CONFIG / "learner.yaml"], "/learner")
    offline = OfflineConfig.from_args(build_parser().parse_args(["--bags", "b", "--out", "o",
                                                                 "--steps", "1"]))  # fmt: skip
    names = ("net", "batch_size", "learning_rate", "conservative_weight", "cem_population",
             "cem_elites", "cem_iterations", "conservative_mode", "conservative_anneal_steps",
             "augment_shift_px", "augment_mirror", "augment_translate", "bootstrap_truncation",
             "mc_lower_bound", "mc_targets", "mc_target_tasks", "policy_camera",
             "action_frame")  # fmt: skip
    for name in names:
        assert getattr(cfg, name) == getattr(LearnerConfig(), name) == getattr(offline, name)
    assert (cfg.net, cfg.batch_size, cfg.conservative_weight) == ("compact", 64, 1.0)
    trainer = cfg.trainer_config(None)
    assert trainer.conservative_mode == TrainerConfig().conservative_mode
    assert cfg.qnet_step_horizon() == 0 and cfg.policy_roi == (0.0, 0.0, 1.0, 1.0)
    text = (CONFIG / "learner.yaml").read_text()
    for name in (*OPTIONS, "step_input", "step_horizon", "policy_roi", "action_frame",
                 "cem_population", "augment_mirror", "augment_translate"):  # fmt: skip
        assert f"    {name}:" in text
    assert {f.name for f in fields(LearnerConfig)} >= set(OPTIONS)


def test_learner_config_options_reach_the_trainer_and_the_network():
    cfg = LearnerConfig(**OPTIONS, step_input=True, step_horizon=9, policy_roi=ROI,
                        policy_camera="wrist", action_frame="tool", cem_population=16,
                        cem_elites=2, cem_iterations=1,
                        augment_mirror=True, augment_translate=0.25).validate()  # fmt: skip
    trainer = cfg.trainer_config(None)
    for name, value in {**OPTIONS, "augment_mirror": True, "augment_translate": 0.25}.items():
        assert getattr(trainer, name) == value
    # recorded in every checkpoint (a cell with other settings refuses the weights)
    assert dict(trainer.policy_settings) == {
        "policy_camera": "wrist",
        "policy_roi": list(ROI),
        "action_frame": "tool",
    }
    assert (trainer.cem.population, trainer.cem.elites, trainer.cem.iterations) == (16, 2, 1)
    assert cfg.qnet_step_horizon() == 9
    assert LearnerConfig(step_horizon=9).qnet_step_horizon() == 0  # step_input off
    net = preset_config("compact", 12, 64, cfg.qnet_step_horizon())
    assert net.step_horizon == 9 and preset_name(net) == "compact"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("conservative_mode", "soft", "must be one of"),
        ("conservative_anneal_steps", -1, "must be an integer >= 0"),
        ("augment_shift_px", -3, "must be an integer >= 0"),
        ("step_horizon", 0, "must be >= 1"),
        ("grasp_weight", -1.0, "must be >= 0"),
        ("policy_roi", (0.5, 0.0, 0.2, 1.0), "0 <= x0 < x1 <= 1"),
        ("policy_roi", (0.0, 0.0, 1.0), "4 finite numbers"),
        ("action_frame", "world", "must be one of"),
        ("augment_mirror", True, "needs policy_camera 'wrist' and action_frame 'tool'"),
        ("augment_translate", 0.5, "needs policy_camera 'wrist' and action_frame 'tool'"),
        ("augment_translate", 1.5, "must be in \\[0, 1\\]"),
        ("lr_decay_steps", -1, "must be an integer >= 0"),
        ("lr_decay_steps", 2.5, "must be an integer >= 0"),
        ("lr_final_fraction", 2.0, "must be in \\[0, 1\\]"),
        ("average_tau", -0.1, "must be in \\[0, 1\\]"),
        ("mc_target_tasks", ("lift-*", " "), "must be fnmatch patterns"),
    ],
)
def test_bad_learning_options_name_their_field(field, value, message):
    with pytest.raises(LearnerConfigError, match=message) as err:
        LearnerConfig(**{field: value}).validate()
    assert err.value.field == field
    with pytest.raises(LearnError, match="--" + field.replace("_", "-")):
        OfflineConfig(bags=Path("b"), out=Path("o"), steps=1, **{field: value}).validate()


def test_mtopt_learn_flags_reach_the_trainer_the_network_and_the_decoder():
    argv = ["--bags", "b", "--out", "o", "--steps", "1", "--conservative-weight", "0.5",
            "--conservative-mode", "relative", "--conservative-anneal-steps", "100",
            "--augment-shift-px", "4", "--bootstrap-truncation", "--mc-lower-bound",
            "--mc-targets", "--mc-target-task", "lift-*", "--mc-target-task", "place-any",
            "--grasp-weight", "0.5", "--lr-decay-steps", "100",
            "--lr-final-fraction", "0.2", "--average-tau", "0.01", "--step-input",
            "--step-horizon", "9", "--policy-roi", "0.25", "0", "0.75", "1",
            "--policy-camera", "wrist", "--action-frame", "tool"]  # fmt: skip
    cfg = OfflineConfig.from_args(build_parser().parse_args(argv)).validate()
    trainer = cfg.trainer_config()
    for name, value in OPTIONS.items():
        assert getattr(trainer, name) == value
    assert cfg.qnet_step_horizon() == 9
    assert cfg.replay_config(Path("b"), Path("o")).policy_roi == ROI
    assert dict(trainer.policy_settings) == {
        "policy_camera": "wrist",
        "policy_roi": list(ROI),
        "action_frame": "tool",
    }
    default = OfflineConfig.from_args(build_parser().parse_args(argv[:6])).validate()
    assert default.trainer_config() == TrainerConfig(
        batch_size=64, learning_rate=1e-3, conservative_weight=1.0,
        cem=CEMConfig(population=16, elites=2, iterations=2), progress=True, log_dir=None,
        lr_decay_steps=1, average_tau=0.001,
        policy_settings=(("policy_camera", "overhead"), ("policy_roi", [0.0, 0.0, 1.0, 1.0]),
                         ("action_frame", "base")),
    )  # fmt: skip
    assert default.qnet_step_horizon() == 0 and default.policy_roi == (0.0, 0.0, 1.0, 1.0)


def test_decoder_crops_the_final_frame_with_the_policys_roi(tmp_path, write_bag, registry):
    written = write_bag(tmp_path, "ep1", steps=2)
    final = written.final_frames["overhead"]
    ep = episode_from_bag(written.path, registry, policy_roi=ROI).episode
    np.testing.assert_array_equal(ep.images[-1], policy_image(final, 16, ROI))
    full = episode_from_bag(written.path, registry).episode
    assert not np.array_equal(ep.images[-1], full.images[-1])
    # the recorded observations are already the policy's crops: unchanged
    np.testing.assert_array_equal(ep.images[:-1], full.images[:-1])
    # a bad setting is an error of the caller, not of the bag
    with pytest.raises(ValueError, match="policy_roi"):
        episode_from_bag(written.path, registry, policy_roi=(0.0, 0.0, 2.0, 1.0))


def test_learner_trains_a_step_input_network_on_roi_cropped_episodes(
    tmp_path, write_bag, registry
):
    for i in range(2):
        written = write_bag(tmp_path / "bags", f"ep{i}", steps=3, seed=i)
    cfg = LearnerConfig(
        bag_dir=str(tmp_path / "bags"), out_dir=str(tmp_path / "run"), net="tiny", batch_size=4,
        cem_population=6, cem_elites=2, cem_iterations=1, min_episodes=2, torch_threads=1,
        tensorboard=False, max_steps=2, checkpoint_every=2, step_input=True, step_horizon=3,
        policy_roi=ROI, **OPTIONS,
    )  # fmt: skip
    learner = Learner(cfg, registry)
    while not learner.done:
        learner.tick()
    learner.close()
    assert learner.step == 2 and learner.trainer.qnet.config.step_horizon == 3
    assert learner.trainer.qnet.config.grasp_head  # grasp_weight > 0 gives a new net the head
    assert learner.trainer.config.augment_shift_px == 4
    # average_tau: the checkpoint acts with the average and keeps the online weights
    ckpt = read_checkpoint(learner.checkpoints.last_path)
    assert "online" in ckpt.extra and ckpt.metadata["average_tau"] == 0.01
    stored = [e.episode for e in learner.replay.buffer._episodes.values()]
    final = written.final_frames["overhead"]
    assert any(np.array_equal(ep.images[-1], policy_image(final, 16, ROI)) for ep in stored)


def test_a_mc_target_pattern_matching_no_task_is_refused_before_any_bag_is_read(
    tmp_path, registry
):
    (tmp_path / "bags").mkdir()
    cfg = LearnerConfig(bag_dir=str(tmp_path / "bags"), out_dir=str(tmp_path / "run"),
                        mc_target_tasks=("lift_*",))  # fmt: skip
    with pytest.raises(LearnError, match="'lift_\\*' matches no task; tasks: lift-any"):
        Learner(cfg, registry)
    assert not (tmp_path / "run").exists()


def test_net_options_override_the_preset_and_bad_ones_are_refused():
    from mtopt_learner.nets import make_qnet_config

    argv = ["--bags", "b", "--out", "o", "--steps", "1", "--net-option", "state_skip=false",
            "--net-option", "channels=24", "--net-option", "fuse_hidden=[48]"]  # fmt: skip
    cfg = OfflineConfig.from_args(build_parser().parse_args(argv)).validate()
    net = make_qnet_config(None, cfg.net, 12, 64, 0, cfg.net_options)
    assert (net.state_skip, net.channels, net.fuse_hidden) == (False, 24, (48,))
    assert net.first_stride == preset_config("compact", 12, 64).first_stride  # the rest: preset
    for bad in ("chanels=24", "channels", "image_size=32"):
        with pytest.raises(LearnError, match="net option"):
            OfflineConfig(bags=Path("b"), out=Path("o"), steps=1, net_options=(bad,)).validate()
    with pytest.raises(LearnError, match="net compact"):
        make_qnet_config(None, "compact", 12, 64, 0, ("norm=batch",))


def test_offline_runs_decay_over_their_steps_and_act_with_the_average():
    """mtopt-learn's schedule: the cosine spans --steps unless --lr-decay-steps says otherwise
    (0: constant); the learner node, which has no end, keeps a constant rate."""
    base = ["--bags", "b", "--out", "o", "--steps", "5000"]
    parse = build_parser().parse_args
    default = OfflineConfig.from_args(parse(base)).validate().trainer_config()
    assert (default.lr_decay_steps, default.average_tau) == (5000, 0.001)
    fixed = OfflineConfig.from_args(parse([*base, "--lr-decay-steps", "800"])).trainer_config()
    assert fixed.lr_decay_steps == 800
    constant = OfflineConfig.from_args(parse([*base, "--lr-decay-steps", "0", "--average-tau",
                                              "0"])).trainer_config()  # fmt: skip
    assert (constant.lr_decay_steps, constant.average_tau) == (0, 0.0)
    node = LearnerConfig().trainer_config(None)
    assert (node.lr_decay_steps, node.average_tau) == (0, 0.0)
