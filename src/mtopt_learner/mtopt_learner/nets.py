"""Q-network presets (`NETS`) and choosing the network a run trains."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtopt_core.checkpoint import read_checkpoint
from mtopt_core.qnet import QNetConfig
from mtopt_learner.errors import LearnError
from mtopt_learner.log_replay import LogReplay

NETS = {
    "tiny": QNetConfig.tiny,
    "compact": QNetConfig.compact,
    "small": QNetConfig.small,
    "paper": QNetConfig.paper,
}


def preset_name(qnet_config: QNetConfig) -> str:
    """The NETS preset a network config is ('custom' when it matches none); a step input
    (`step_horizon`) does not change the name."""
    c = qnet_config
    for name, make in NETS.items():
        try:
            if make(c.num_tasks, image_size=c.image_size, step_horizon=c.step_horizon) == c:
                return name
        except ValueError:
            continue
    return "custom"


def parse_net_options(items) -> dict[str, Any]:
    """`KEY=VALUE` QNetConfig overrides (VALUE in YAML: 32, false, [64]) -> {key: value}."""
    known = {f.name for f in fields(QNetConfig)} - {"num_tasks", "image_size", "step_horizon"}
    options = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise LearnError(
                f"net option {item!r}: not KEY=VALUE with KEY one of the QNetConfig fields "
                f"{sorted(known)}"
            )
        value = yaml.safe_load(text)
        options[key] = tuple(value) if isinstance(value, list) else value
    return options


def preset_config(
    net: str, num_tasks: int, image_size: int, step_horizon: int = 0, options=()
) -> QNetConfig:
    """The `net` preset for `num_tasks` tasks and `image_size` px observations, with a step
    input of horizon `step_horizon` (0 = none; `QNetConfig.step_horizon`) and the
    `KEY=VALUE` overrides `options` (`parse_net_options`)."""
    try:
        return NETS[net](
            num_tasks, image_size=image_size, step_horizon=step_horizon,
            **parse_net_options(options),
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise LearnError(f"net {net} with {image_size} px observations: {exc}") from None


def resumed_qnet_config(resume_from: Path | None, image_size: int) -> QNetConfig | None:
    """The network of the checkpoint a run resumes from (None: a new run), read once; an
    `image_size` other than 0 must be its size."""
    if resume_from is None:
        return None
    qnet_config = read_checkpoint(resume_from).qnet_config
    check_resumed_image_size(resume_from, qnet_config, image_size, "--image-size")
    return qnet_config


def check_resumed_image_size(
    resume_from: Path, qnet_config: QNetConfig, image_size: int, setting: str
) -> None:
    """A resumed network keeps its observation size: an `image_size` other than 0 (the
    setting named `setting`) must equal it; the episodes are resized to it."""
    if image_size and image_size != qnet_config.image_size:
        raise LearnError(
            f"{resume_from} takes {qnet_config.image_size} px images, {setting} is {image_size}"
        )


def observation_size(resumed: QNetConfig | None, image_size: int) -> int | None:
    """The side [px] to resize the recorded observations to: the resumed network's, else
    `image_size` (0: None, as recorded)."""
    return resumed.image_size if resumed is not None else image_size or None


def make_qnet_config(
    resumed: QNetConfig | None,
    net: str,
    num_tasks: int,
    image_size: int,
    step_horizon: int = 0,
    options=(),
) -> QNetConfig:
    """The network to train: the resumed one (its episodes were resized to its size), else
    the `net` preset for `image_size` px observations (with `step_horizon` and the overrides
    `options`)."""
    if resumed is not None:
        return resumed
    return preset_config(net, num_tasks, image_size, step_horizon, options)


def replay_image_size(replay: LogReplay) -> int:
    """Observation side [px] of the episodes in a (non-empty) replay buffer."""
    return int(replay.buffer.sample(1, np.random.default_rng(0)).image.shape[1])
