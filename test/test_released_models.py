"""Released models (models/): each checkpoint matches its sha256 sidecar and the sha256 in
models/README.md, is small, and is accepted by the policy node's own weights check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mtopt_core.tasks import load_task_registry
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import make_planner

MODELS = Path(__file__).resolve().parents[1] / "models"
CHECKPOINTS = sorted(MODELS.glob("*.ckpt"))


def test_there_is_a_released_q_network():
    assert CHECKPOINTS, f"no released checkpoint in {MODELS}"


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.name)
def test_released_checkpoint_is_intact_documented_and_loadable(path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = path.with_name(path.name + ".sha256").read_text().split()
    assert sidecar == [digest, path.name]
    assert f"{path.name}" in (MODELS / "README.md").read_text()
    assert digest in (MODELS / "README.md").read_text()
    assert path.stat().st_size <= 20 * 1024**2
    registry = load_task_registry()
    slot = make_planner(PolicyConfig(image_size=64).validate(), registry).weights
    loaded = slot.offer(str(path), 1, digest, registry.names)  # raises WeightsRefused
    assert loaded.sha256 == digest
