"""The learner run's identity (WeightsUpdate.run_id): random for a new run, stored in the run
directory, kept when the run resumes, so a restarted learner_node goes on numbering its
versions under the same id (policies order versions only within a run id)."""

from __future__ import annotations

import time

import pytest
import rclpy
import torch
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from mtopt_bridge.qos import WEIGHTS_QOS
from mtopt_core.checkpoint import save_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_interfaces.msg import WeightsUpdate
from mtopt_learner.checkpoints import CHECKPOINT_DIR, LATEST, RUN_ID, read_run_id, run_identity
from mtopt_learner.learner_node import LearnerNode


def test_a_resumed_run_keeps_its_id_and_a_new_run_gets_a_fresh_one(tmp_path):
    out = tmp_path / "run"
    run_id, kept = run_identity(out, resumed=False)
    assert not kept and len(run_id) == 32 and read_run_id(out) == run_id
    assert run_identity(out, resumed=True) == (run_id, True)
    assert run_identity(out, resumed=True) == (run_id, True)
    fresh, kept = run_identity(out, resumed=False)  # a new run over the directory
    assert not kept and fresh != run_id and read_run_id(out) == fresh
    # a run directory from before run ids (or mtopt-learn's): an id is assigned once, then kept
    legacy = tmp_path / "legacy"
    (legacy / CHECKPOINT_DIR).mkdir(parents=True)
    assigned, kept = run_identity(legacy, resumed=True)
    assert not kept and run_identity(legacy, resumed=True) == (assigned, True)
    (legacy / CHECKPOINT_DIR / RUN_ID).write_text("not a run id\n")
    replaced, kept = run_identity(legacy, resumed=True)
    assert not kept and replaced != assigned and read_run_id(legacy) == replaced


@pytest.fixture
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(context, bags, out) -> LearnerNode:
    params = {"bag_dir": str(bags), "out_dir": str(out), "net": "tiny", "torch_threads": 1}
    return LearnerNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )


def test_learner_node_announces_under_the_same_run_id_after_a_restart(tmp_path, context, registry):
    bags, out = tmp_path / "bags", tmp_path / "run"
    bags.mkdir()
    first = _node(context, bags, out)
    run_id = first.run_id
    first.close()
    first.destroy_node()
    # The run wrote a checkpoint at step 4 (as its Learner does), then the node restarts.
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(len(registry.names), image_size=64))
    save_checkpoint(out / CHECKPOINT_DIR / "qnet_4.ckpt", net, registry.names, step=4)
    (out / CHECKPOINT_DIR / LATEST).write_text("qnet_4.ckpt\n")
    listener = rclpy.create_node("listener", context=context)
    received: list[WeightsUpdate] = []
    listener.create_subscription(WeightsUpdate, "policy/weights", received.append, WEIGHTS_QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    second = _node(context, bags, out)
    try:
        assert second.run_id == run_id
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert received, "the resumed checkpoint was not announced"
        assert (received[0].run_id, received[0].version) == (run_id, 4)
    finally:
        second.close()
        second.destroy_node()
        executor.shutdown()
        listener.destroy_node()
    # a new run over another directory: another id
    third = _node(context, bags, tmp_path / "other")
    try:
        assert third.run_id != run_id
    finally:
        third.close()
        third.destroy_node()
