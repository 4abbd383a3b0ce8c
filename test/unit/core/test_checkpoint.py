"""Checkpoints: atomic write with sha256; corrupted, truncated, NaN, mismatched files are
refused with a clear error and the previous weights stay in use."""

import hashlib
import io
from types import SimpleNamespace

import pytest
import torch

from mtopt_core.checkpoint import (
    FORMAT_VERSION,
    HEADER,
    MAGIC,
    POLICY_SETTINGS_KEY,
    CheckpointError,
    describe_mismatch,
    file_sha256,
    load_qnet_weights,
    policy_settings_mismatch,
    policy_settings_of,
    qnet_from_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import ReplayBuffer
from mtopt_core.trainer import Trainer, TrainerConfig

TASKS = ("t0", "t1", "t2")


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(module, snap):
    for k, v in module.state_dict().items():
        assert torch.equal(v, snap[k]), k


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    net = QNet(QNetConfig.tiny(3))
    path = tmp_path / "w" / "qnet.ckpt"
    digest = save_checkpoint(path, net, TASKS, step=42, metadata={"run": "test"})
    return net, path, digest


def test_round_trip_and_sidecar_hash(saved):
    net, path, digest = saved
    assert digest == file_sha256(path)
    assert sidecar_path(path).read_text() == f"{digest}  qnet.ckpt\n"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    torch.manual_seed(2)
    other = QNet(QNetConfig.tiny(3))
    ckpt = load_qnet_weights(other, path, TASKS, expected_sha256=digest)
    assert ckpt.step == 42 and ckpt.metadata["run"] == "test" and ckpt.task_names == TASKS
    assert_same(other, snapshot(net))
    built, _ = qnet_from_checkpoint(path, TASKS)
    assert built.config == net.config
    assert_same(built, snapshot(net))


def refuse(path, target, match, **kwargs):
    before = snapshot(target)
    with pytest.raises(CheckpointError, match=match) as info:
        load_qnet_weights(target, path, TASKS, **kwargs)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert_same(target, before)  # previous weights stay in use


@pytest.mark.parametrize("where", ["payload_start", "payload_middle", "payload_end"])
def test_flipped_bytes_are_refused(saved, where):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    pos = {"payload_start": HEADER.size, "payload_middle": len(data) // 2,
           "payload_end": len(data) - 1}[where]  # fmt: skip
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    refuse(path, QNet(QNetConfig.tiny(3)), "sha256 mismatch")


def test_corrupted_header_is_refused(saved):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    refuse(path, QNet(QNetConfig.tiny(3)), "not an MT-Opt checkpoint")


@pytest.mark.parametrize("keep", [0, 20, HEADER.size + 10, -1])
def test_truncated_files_are_refused(saved, keep):
    _, path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    refuse(path, QNet(QNetConfig.tiny(3)), "truncated")


def write_raw(path, body):
    """A well-formed file (valid header and payload hash) around an arbitrary body."""
    buf = io.BytesIO()
    torch.save(body, buf)
    payload = buf.getvalue()
    path.write_bytes(HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused(tmp_path, bad):
    net = QNet(QNetConfig.tiny(3))
    state = snapshot(net)
    key = next(k for k in state if k.endswith("weight"))
    state[key].view(-1)[3] = bad
    path = tmp_path / "nan.ckpt"
    write_raw(path, {"format": FORMAT_VERSION, "qnet_config": net.config.to_dict(),
                     "task_names": list(TASKS), "state_dict": state, "step": 1,
                     "metadata": {}, "extra": {}})  # fmt: skip
    refuse(path, QNet(QNetConfig.tiny(3)), f"NaN or Inf in state_dict.{key}")
    # Saving NaN weights is refused too, and leaves no file behind.
    with torch.no_grad():
        net.state_dict()[key].view(-1)[0] = bad
    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(tmp_path / "never.ckpt", net, TASKS)
    assert not (tmp_path / "never.ckpt").exists()


def test_architecture_and_task_list_mismatch_are_refused(saved):
    _, path, _ = saved
    refuse(path, QNet(QNetConfig.tiny(3, channels=8)), "architecture mismatch.*channels")
    refuse(path, QNet(QNetConfig.tiny(3, multi_head=True)), "architecture mismatch")
    target = QNet(QNetConfig.tiny(3))
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="task list mismatch"):
        load_qnet_weights(target, path, ("t0", "t2", "t1"))
    assert_same(target, before)


def test_hash_mismatches_and_missing_file_are_refused(saved, tmp_path):
    _, path, digest = saved
    target = QNet(QNetConfig.tiny(3))
    refuse(path, target, "expected", expected_sha256="0" * 64)
    sidecar_path(path).write_text("f" * 64 + "  qnet.ckpt\n")
    refuse(path, target, r"qnet.ckpt.sha256")
    refuse(tmp_path / "absent.ckpt", target, "cannot read")


def test_trainer_keeps_weights_when_a_checkpoint_is_refused(saved, tmp_path):
    _, path, _ = saved
    trainer = Trainer(QNet(QNetConfig.tiny(3)), ReplayBuffer(TASKS), TrainerConfig(progress=False))
    good = tmp_path / "trainer.ckpt"
    trainer.save_checkpoint(good)
    data = bytearray(good.read_bytes())
    data[len(data) // 3] ^= 0x10
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(data))
    before = snapshot(trainer.qnet)
    with pytest.raises(CheckpointError, match="bad.ckpt.*sha256 mismatch"):
        trainer.load_checkpoint(bad)
    assert_same(trainer.qnet, before)
    # A valid checkpoint of a different network loads, targets included.
    ckpt = trainer.load_checkpoint(path)
    assert ckpt.step == 42 and trainer.step_count == 42
    assert_same(trainer.qnet, snapshot(saved[0]))
    assert_same(trainer.target1, snapshot(saved[0]))


def test_only_bounded_regular_files_are_read_and_errors_do_not_echo_content(saved, tmp_path):
    """A FIFO (which would block the reader), a directory and an over-size file are refused
    before any byte is read; a wrong-magic file's bytes are not echoed in the message."""
    import os
    import threading

    from mtopt_core.checkpoint import read_checkpoint

    _, path, _ = saved
    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    result = {}

    def read_fifo():
        try:
            read_checkpoint(fifo)
        except CheckpointError as exc:
            result["error"] = str(exc)

    reader = threading.Thread(target=read_fifo, daemon=True)
    reader.start()
    reader.join(timeout=5.0)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "not a regular file" in result["error"]
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(tmp_path)
    size = path.stat().st_size
    with pytest.raises(CheckpointError, match=f"{size} bytes, larger than the limit of 100"):
        read_checkpoint(path, max_bytes=100)
    secret = tmp_path / "secret.ckpt"
    secret.write_bytes(b"password=hunter2" + b"\0" * 64)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(secret)
    assert "wrong magic" in str(err.value) and "hunter2" not in str(err.value)
    assert "passwor" not in str(err.value)


def test_policy_settings_of_reads_the_recorded_names_from_a_config():
    config = SimpleNamespace(policy_camera="wrist", policy_roi=(0, 0.25, 1, 0.75),
                             action_frame="tool", epsilon=0.1)  # fmt: skip
    settings = policy_settings_of(config)
    assert settings == {"policy_camera": "wrist", "policy_roi": [0.0, 0.25, 1.0, 0.75],
                        "action_frame": "tool"}  # fmt: skip
    assert all(isinstance(v, float) for v in settings["policy_roi"])
    assert policy_settings_mismatch({POLICY_SETTINGS_KEY: settings}, settings) == []


def test_policy_settings_mismatch_names_what_differs_and_skips_what_either_side_lacks():
    trained = {POLICY_SETTINGS_KEY: {"policy_camera": "wrist", "action_frame": "tool",
                                     "policy_roi": [0.0, 0.0, 1.0, 1.0]}}  # fmt: skip
    own = {"policy_camera": "wrist", "action_frame": "tool", "policy_roi": (0.0, 0.0, 1.0, 1.0)}
    assert policy_settings_mismatch(trained, own) == []
    assert policy_settings_mismatch(trained, {**own, "policy_roi": (0, 0, 1.0, 1 + 1e-9)}) == []
    moved = {**own, "action_frame": "base", "policy_roi": (0.1, 0.0, 1.0, 1.0)}
    mismatch = policy_settings_mismatch(trained, moved)
    assert [name for name, _, _ in mismatch] == ["policy_roi", "action_frame"]
    described = describe_mismatch(mismatch[1:], "here")
    assert described == "trained for action_frame 'tool' (here 'base')"
    # an old checkpoint records nothing; a setting the reader does not have is not compared
    assert policy_settings_mismatch({}, moved) == []
    assert policy_settings_mismatch(trained, {"image_size": 64}) == []
    # a malformed record is a mismatch, not a crash
    malformed = policy_settings_mismatch({POLICY_SETTINGS_KEY: "tool"}, own)
    assert malformed[0][0] == POLICY_SETTINGS_KEY
    crafted = {POLICY_SETTINGS_KEY: {"policy_roi": torch.zeros(4), "action_frame": None}}
    assert [name for name, _, _ in policy_settings_mismatch(crafted, own)] == [
        "policy_roi",
        "action_frame",
    ]
