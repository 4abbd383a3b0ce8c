"""Released models (models/): each checkpoint matches its sha256 sidecar and the sha256 in
models/README.md and is small; a Q-network (`*qnet*.ckpt`) is accepted by the policy node's own
weights check on the cell it was trained for (the policy settings it records) and refused by a
cell with other settings; a success detector (`*success_detector*.ckpt`) passes the SD node's
checkpoint check for the task registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mtopt_core import sd_model
from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, policy_settings_mismatch, read_checkpoint
from mtopt_core.tasks import load_task_registry
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import WeightsRefused, make_planner

MODELS = Path(__file__).resolve().parents[1] / "models"
QNETS = sorted(MODELS.glob("*qnet*.ckpt"))
DETECTORS = sorted(MODELS.glob("*success_detector*.ckpt"))


def test_there_is_a_released_q_network_and_success_detector():
    assert QNETS, f"no released Q-network in {MODELS}"
    assert DETECTORS, f"no released success detector in {MODELS}"
    assert set(MODELS.glob("*.ckpt")) == set(QNETS) | set(DETECTORS), "a model of unknown kind"


def _intact_and_documented(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = path.with_name(path.name + ".sha256").read_text().split()
    assert sidecar == [digest, path.name]
    assert f"{path.name}" in (MODELS / "README.md").read_text()
    assert digest in (MODELS / "README.md").read_text()
    assert path.stat().st_size <= 20 * 1024**2
    return digest


@pytest.mark.parametrize("path", DETECTORS, ids=lambda p: p.name)
def test_released_success_detector_is_intact_documented_and_loadable(path):
    digest = _intact_and_documented(path)
    registry = load_task_registry()
    loaded = sd_model.load_checkpoint(path, expected_tasks=registry.names, expected_sha256=digest)
    assert loaded.sha256 == digest


@pytest.mark.parametrize("path", QNETS, ids=lambda p: p.name)
def test_released_q_network_is_intact_documented_and_loadable(path):
    digest = _intact_and_documented(path)
    registry = load_task_registry()
    # the cell the network was trained for (the recorded settings; older models record none)
    trained_for = read_checkpoint(path).metadata.get(POLICY_SETTINGS_KEY, {})
    cell = PolicyConfig(image_size=64, **trained_for).validate()
    slot = make_planner(cell, registry).weights
    loaded = slot.offer(str(path), 1, digest, registry.names)  # raises WeightsRefused
    assert loaded.sha256 == digest
    # a cell with the defaults refuses a model recorded for other settings
    metadata = {POLICY_SETTINGS_KEY: trained_for}
    defaults = {k: getattr(PolicyConfig(), k) for k in trained_for}
    if policy_settings_mismatch(metadata, defaults):
        default_cell = make_planner(PolicyConfig(image_size=64).validate(), registry).weights
        with pytest.raises(WeightsRefused, match="trained for"):
            default_cell.offer(str(path), 1, digest, registry.names)
