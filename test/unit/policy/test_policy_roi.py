"""policy_node's `policy_roi` parameter: validated, documented in config/policy.yaml, and the
step index reaches a Q-network with a step input through the CEM source."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mtopt_bridge.params import ConfigError, config_from_params_files
from mtopt_core.cem import CEMConfig, CEMPolicy
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import CemSource, Observation, RandomActions

CONFIG = Path(__file__).resolve().parents[3] / "config"


def test_policy_roi_defaults_to_the_whole_frame_and_bad_values_are_named():
    cfg = config_from_params_files(PolicyConfig(), [CONFIG / "policy.yaml"], "/cell0/policy")
    assert cfg.policy_roi == (0.0, 0.0, 1.0, 1.0)
    roi = (0.026, 0.143, 0.56, 0.677)
    assert PolicyConfig(policy_roi=roi).validate().policy_roi == roi
    for bad in ((0.0, 0.0, 1.0), (0.5, 0.0, 0.4, 1.0), (0.0, -0.1, 1.0, 1.0)):
        with pytest.raises(ConfigError, match="parameter policy_roi"):
            PolicyConfig(policy_roi=bad).validate()


def test_cem_source_feeds_the_step_index_of_each_observation():
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(12, image_size=16, step_horizon=4)).eval()
    seen = []

    class Recording(CEMPolicy):
        def act(self, *args, **kwargs):
            seen.append(args[5][0])
            return super().act(*args, **kwargs)

    rng = np.random.default_rng(0)
    source = CemSource(Recording(net, CEMConfig(8, 2, 1)), 0, 0.0, RandomActions(rng, 0.1), rng)
    obs = Observation(np.zeros((16, 16, 3), np.uint8), None, False, 0.1)
    for _ in range(3):
        decision = source.act(obs)
        assert 0.0 <= decision.q_value <= 1.0
    assert seen == [0, 1, 2]
