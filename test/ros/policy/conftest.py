"""Helpers for the policy/collector tests: Q-network checkpoints, good and bad."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch

from mtopt_core.checkpoint import HEADER, MAGIC, file_sha256, save_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import load_task_registry

IMAGE_SIZE = 64


def tiny_qnet(num_tasks: int, seed: int = 0) -> QNet:
    torch.manual_seed(seed)
    return QNet(QNetConfig.tiny(num_tasks, image_size=IMAGE_SIZE))


def write_good(path: Path, task_names, step: int, seed: int = 0) -> str:
    """A valid checkpoint; returns its sha256."""
    return save_checkpoint(path, tiny_qnet(len(task_names), seed), task_names, step=step)


def write_nan(path: Path, task_names, step: int) -> str:
    """A well-formed checkpoint file (header, payload hash) whose weights contain NaN:
    `save_checkpoint` refuses to write one, so the format is assembled here."""
    qnet = tiny_qnet(len(task_names))
    state = {k: v.detach().clone() for k, v in qnet.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    body = {
        "format": 1,
        "qnet_config": qnet.config.to_dict(),
        "task_names": list(task_names),
        "state_dict": state,
        "step": step,
        "metadata": {},
        "extra": {},
    }
    buf = io.BytesIO()
    torch.save(body, buf)
    payload = buf.getvalue()
    path.write_bytes(HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload)
    return file_sha256(path)


def write_truncated(path: Path, task_names, step: int) -> str:
    """A valid checkpoint cut short after writing; returns the sha256 of the cut file (so only
    the integrity check can catch it)."""
    write_good(path, task_names, step)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    Path(str(path) + ".sha256").unlink()
    return file_sha256(path)


@pytest.fixture(scope="session")
def registry():
    return load_task_registry()


class _Checkpoints:
    """The writers above, handed to tests as a fixture (conftest modules are not importable
    with --import-mode=importlib)."""

    good = staticmethod(write_good)
    nan = staticmethod(write_nan)
    truncated = staticmethod(write_truncated)
    image_size = IMAGE_SIZE


@pytest.fixture(scope="session")
def checkpoints():
    return _Checkpoints
