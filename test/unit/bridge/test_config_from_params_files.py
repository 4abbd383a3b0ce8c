"""`config_from_params_files`: a node's config from ROS 2 parameter files, without a node."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mtopt_bridge.params import ConfigError, config_from_params_files


@dataclass(frozen=True)
class Config:
    rate: float = 1.0
    names: tuple[str, ...] = ("a",)
    count: int = 2

    def validate(self) -> Config:
        if self.count < 0:
            raise ConfigError(f"parameter count must be >= 0, got {self.count}")
        return self


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_matching_blocks_apply_in_order_and_others_are_ignored(tmp_path):
    base = write(tmp_path / "base.yaml", """
/**/policy:
  ros__parameters: {rate: 2, names: [x, y], use_sim_time: true}
/**/collector:
  ros__parameters: {unrelated: 1}
""")  # fmt: skip
    cell = write(tmp_path / "cell.yaml", """
cell1:
  policy:
    ros__parameters: {count: 5}
""")  # fmt: skip
    config = config_from_params_files(Config(count=3), [base, cell], "/cell0/policy")
    assert config == Config(rate=2.0, names=("x", "y"), count=3)  # int 2 -> float 2.0
    assert config_from_params_files(Config(), [base, cell], "/cell1/policy").count == 5
    assert config_from_params_files(Config(count=4), [], "/cell0/policy") == Config(count=4)


def test_bad_files_and_values_name_what_is_wrong(tmp_path):
    typo = write(tmp_path / "typo.yaml", "/**/policy:\n  ros__parameters: {rat: 2.0}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: node /cell0/policy: unknown parameter "
                                          r"'rat' \(did you mean 'rate'\?\)"):  # fmt: skip
        config_from_params_files(Config(), [typo], "/cell0/policy")
    wrong = write(tmp_path / "wrong.yaml", "/**/policy:\n  ros__parameters: {count: many}\n")
    with pytest.raises(ConfigError, match="parameter count must be of type int"):
        config_from_params_files(Config(), [wrong], "/cell0/policy")
    invalid = write(tmp_path / "invalid.yaml", "/**/policy:\n  ros__parameters: {count: -1}\n")
    with pytest.raises(ConfigError, match="count must be >= 0"):
        config_from_params_files(Config(), [invalid], "/cell0/policy")
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        config_from_params_files(Config(), [str(tmp_path / "missing.yaml")], "/cell0/policy")
