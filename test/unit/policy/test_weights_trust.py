"""What the policy's `WeightsSlot` accepts from a WeightsUpdate (README "Weights trust"):
versions ordered within a learner run id (a stray huge version cannot pin the cell), files only
from `weights_dirs` (no symlink or `..` escape), a time limit on loading; and the camera input
that drops a malformed frame instead of ending the episode."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sensor_msgs.msg import Image

from mtopt_bridge.image import numpy_to_image
from mtopt_bridge.params import ConfigError
from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, save_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import load_task_registry
from mtopt_policy import policy as policy_module
from mtopt_policy.config import PolicyConfig
from mtopt_policy.inputs import LatestInput, StaleInputError, wait_fresh
from mtopt_policy.policy import (
    EpisodeRunner,
    MoveResult,
    Observation,
    WeightsRefused,
    make_planner,
)
from mtopt_policy.policy_node import check_frame

HUGE = 2**63 - 1
RUN = "a" * 32


@pytest.fixture(scope="module")
def names():
    return load_task_registry().names


def write(path: Path, names, step: int, seed: int = 0) -> str:
    """A valid tiny checkpoint recording `step`; returns its sha256."""
    torch.manual_seed(seed)
    net = QNet(QNetConfig.tiny(len(names), image_size=64))
    return save_checkpoint(path, net, names, step=step)


def planner(**overrides):
    config = replace(PolicyConfig(seed=1, cem_population=8, cem_elites=2), **overrides)
    return make_planner(config.validate(), load_task_registry())


# ------------------------------------------------------------------------------- versions


def test_a_huge_version_is_refused_as_a_jump_and_the_learners_next_update_loads(tmp_path, names):
    slot = planner(weights_dirs=(str(tmp_path),)).weights
    slot.offer(str(tmp_path / "a.ckpt"), 10, write(tmp_path / "a.ckpt", names, 10), run_id=RUN)
    # a valid file of the run, announced with the largest version
    sha = write(tmp_path / "b.ckpt", names, 20, seed=1)
    with pytest.raises(WeightsRefused, match=r"jumps .* more than max_version_jump"):
        slot.offer(str(tmp_path / "b.ckpt"), HUGE, sha, run_id=RUN)
    loaded = slot.offer(str(tmp_path / "b.ckpt"), 20, sha, run_id=RUN)  # the learner's next
    assert (loaded.version, loaded.run_id) == (20, RUN)
    # a jump within the limit is fine, one beyond it is not
    tight = planner(max_version_jump=5).weights
    tight.offer(str(tmp_path / "a.ckpt"), 10, write(tmp_path / "a.ckpt", names, 10), run_id=RUN)
    with pytest.raises(WeightsRefused, match="max_version_jump"):
        tight.offer(str(tmp_path / "b.ckpt"), 20, sha, run_id=RUN)
    assert tight.offer(str(tmp_path / "b.ckpt"), 15, sha, run_id=RUN).version == 15


def test_a_huge_version_first_does_not_pin_the_cell_either(tmp_path, names):
    """Nothing loaded yet (no version to jump from): the version of an announced update may
    not exceed the training step the checkpoint records (the learner announces version =
    step). A local caller (mtopt-eval: a file on its command line) gives a nominal version."""
    slot = planner().weights
    sha = write(tmp_path / "c.ckpt", names, 30)
    with pytest.raises(WeightsRefused, match="above the training step 30 recorded"):
        slot.offer(str(tmp_path / "c.ckpt"), HUGE, sha, run_id=RUN, announced=True)
    assert slot.newest() is None
    loaded = slot.offer(str(tmp_path / "c.ckpt"), 30, sha, run_id=RUN, announced=True)
    assert loaded.version == 30
    local = planner().weights
    assert local.offer(str(tmp_path / "c.ckpt"), 31, sha).version == 31


def test_a_new_run_id_is_accepted_with_a_lower_version(tmp_path, names):
    slot = planner().weights
    slot.offer(str(tmp_path / "a.ckpt"), 500, write(tmp_path / "a.ckpt", names, 500), run_id=RUN)
    sha = write(tmp_path / "b.ckpt", names, 2, seed=1)
    with pytest.raises(WeightsRefused, match="not newer than the loaded version 500"):
        slot.offer(str(tmp_path / "b.ckpt"), 2, sha, run_id=RUN)
    loaded = slot.offer(str(tmp_path / "b.ckpt"), 2, sha, run_id="b" * 32)  # a new run
    assert (loaded.version, loaded.run_id) == (2, "b" * 32)
    assert slot.swap() is loaded
    with pytest.raises(WeightsRefused, match="negative"):
        slot.offer(str(tmp_path / "b.ckpt"), -1, sha, run_id="c" * 32)
    with pytest.raises(WeightsRefused, match="run_id is not a printable name"):
        slot.offer(str(tmp_path / "b.ckpt"), 3, sha, run_id="x\nforged log line")


# ---------------------------------------------------------------------------- directories


def test_files_outside_weights_dirs_are_refused(tmp_path, names):
    inside, outside = tmp_path / "weights", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    slot = planner(weights_dirs=(str(inside),)).weights
    sha = write(outside / "w.ckpt", names, 3)
    with pytest.raises(WeightsRefused, match="outside weights_dirs"):
        slot.offer(str(outside / "w.ckpt"), 3, sha)
    with pytest.raises(WeightsRefused, match="outside weights_dirs"):  # a `..` escape
        slot.offer(str(inside / ".." / "elsewhere" / "w.ckpt"), 3, sha)
    (inside / "link.ckpt").symlink_to(outside / "w.ckpt")  # a symlink escaping
    with pytest.raises(WeightsRefused, match="outside weights_dirs"):
        slot.offer(str(inside / "link.ckpt"), 3, sha)
    (inside / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(WeightsRefused, match="outside weights_dirs"):
        slot.offer(str(inside / "sub" / "w.ckpt"), 3, sha)
    with pytest.raises(WeightsRefused, match="cannot read the file"):
        slot.offer(str(inside / "missing.ckpt"), 3, sha)
    assert slot.newest() is None
    # inside: loaded, also through a symlink that stays inside
    good = inside / "qnet_3.ckpt"
    sha = write(good, names, 3, seed=1)
    (inside / "latest.ckpt").symlink_to(good)
    loaded = slot.offer(str(inside / "latest.ckpt"), 3, sha)
    assert loaded.path == str(good.resolve())


def test_a_sidecar_must_be_a_small_hash_file_inside_and_is_never_quoted(tmp_path, names):
    inside = tmp_path / "weights"
    inside.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2 is the password\n")
    slot = planner(weights_dirs=(str(inside),)).weights
    path = inside / "w.ckpt"
    sha = write(path, names, 4)
    sidecar = Path(f"{path}.sha256")
    sidecar.unlink()
    sidecar.symlink_to(secret)
    with pytest.raises(WeightsRefused, match="sidecar w.ckpt.sha256 resolves to .* outside"):
        slot.offer(str(path), 4, sha)
    sidecar.unlink()
    sidecar.write_text("hunter2 is the password\n")
    with pytest.raises(WeightsRefused, match="does not hold a sha256") as info:
        slot.offer(str(path), 4, sha)
    assert "hunter2" not in info.value.reason
    sidecar.write_text(f"{sha}  w.ckpt\n")
    assert slot.offer(str(path), 4, sha).version == 4


def test_weights_dirs_must_be_absolute():
    with pytest.raises(ConfigError, match="weights_dirs must list absolute directories"):
        PolicyConfig(weights_dirs=("relative/dir",)).validate()
    with pytest.raises(ConfigError, match="max_version_jump must be >= 1"):
        PolicyConfig(max_version_jump=0).validate()
    with pytest.raises(ConfigError, match="weights_load_timeout_s must be > 0"):
        PolicyConfig(weights_load_timeout_s=0.0).validate()
    assert PolicyConfig(weights_dirs=("~/runs", "/data/models")).validate()


# ----------------------------------------------------------------------------- time limit


def test_a_load_over_the_time_limit_is_refused_and_the_old_weights_stay(
    tmp_path, names, monkeypatch
):
    slot = planner(weights_load_timeout_s=0.2).weights
    slot.offer(str(tmp_path / "a.ckpt"), 1, write(tmp_path / "a.ckpt", names, 1))
    release = threading.Event()
    real = policy_module.qnet_from_checkpoint

    def hung(*args, **kwargs):  # a read on a hung file system
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_module, "qnet_from_checkpoint", hung)
    sha = write(tmp_path / "b.ckpt", names, 2, seed=1)
    start = time.monotonic()
    for _ in range(policy_module.MAX_ABANDONED_LOADS):
        with pytest.raises(WeightsRefused, match="longer than weights_load_timeout_s"):
            slot.offer(str(tmp_path / "b.ckpt"), 2, sha)
    assert time.monotonic() - start < 2.0
    with pytest.raises(WeightsRefused, match="still running"):  # no pile of stuck threads
        slot.offer(str(tmp_path / "b.ckpt"), 2, sha)
    assert slot.newest().version == 1
    release.set()
    monkeypatch.setattr(policy_module, "qnet_from_checkpoint", real)
    deadline = time.monotonic() + 10
    while True:  # the abandoned loads end and are no longer counted
        try:
            assert slot.offer(str(tmp_path / "b.ckpt"), 2, sha).version == 2
            break
        except WeightsRefused as exc:
            assert "still running" in exc.reason and time.monotonic() < deadline
            time.sleep(0.05)


# ------------------------------------------------------------------------ malformed frames


def frame_msg(value: int = 80) -> Image:
    return numpy_to_image(np.full((24, 32, 3), value, np.uint8), "rgb8")


MALFORMED = {
    "data length": Image(height=24, width=32, encoding="rgb8", step=96, data=b"\0" * 10),
    "step": Image(height=24, width=32, encoding="rgb8", step=10, data=b"\0" * 240),
    "encoding": Image(height=24, width=32, encoding="yuv422", step=64, data=b"\0" * 1536),
    "no pixels": Image(height=0, width=32, encoding="rgb8", step=96, data=b""),
    "mono": numpy_to_image(np.zeros((24, 32), np.uint8), "mono8"),
}


def test_malformed_frames_are_dropped_and_counted():
    camera = LatestInput("camera overhead", check=check_frame)
    assert camera.put(frame_msg(1))
    for bad in MALFORMED.values():
        assert not camera.put(bad)
    assert camera.dropped == len(MALFORMED) and camera.count == 1
    assert camera.latest()[0].data == frame_msg(1).data  # the valid frame stays the latest
    after = time.monotonic()
    threading.Timer(0.05, camera.put, (MALFORMED["step"],)).start()
    threading.Timer(0.1, camera.put, (frame_msg(2),)).start()
    (got,) = wait_fresh([camera], after, 1.0)  # the next valid frame, not the bad one
    assert got.data == frame_msg(2).data
    # only malformed frames: stale, saying why
    after = time.monotonic()
    camera.put(MALFORMED["data length"])
    with pytest.raises(StaleInputError, match=r"camera overhead stale for .* \(1 malformed"):
        wait_fresh([camera], after, 0.1)


class FramePort:
    """A cell whose camera sends a malformed frame before every valid one."""

    def __init__(self):
        self.camera = LatestInput("camera overhead", check=check_frame)
        self.steps = []

    def move(self, mode, translation, yaw, duration):
        return MoveResult(0, "ok", np.array([0.56, -0.15, 0.2]), 0.0)

    def gripper(self, close):
        return "REACHED"

    def wait_first_inputs(self, timeout):
        pass

    def observe(self, after):
        self.camera.put(MALFORMED["data length"])
        self.camera.put(frame_msg(len(self.steps)))
        (msg,) = wait_fresh([self.camera], after, 0.5)
        image = np.zeros((64, 64, 3), np.uint8)
        return Observation(image, msg, False, 0.2)

    def publish_step(self, plan, step, decision, obs):
        self.steps.append(obs.image_msg)

    def cancel_requested(self):
        return False


def test_the_episode_goes_on_with_the_next_valid_frame():
    plans = make_planner(
        PolicyConfig(seed=2, random_terminate_prob=0.0, max_steps=5).validate(),
        load_task_registry(),
    )
    port = FramePort()
    outcome = EpisodeRunner(port, plans.config).run(
        plans.plan("e", "lift-any", requested_kind="random")
    )
    assert not outcome.aborted, outcome.reason
    assert outcome.steps == 5
    assert port.camera.dropped == 6  # the start observation and 5 steps
    assert all(msg.encoding == "rgb8" and len(msg.data) == 24 * 96 for msg in port.steps)


# ------------------------------------------------------------------------ policy settings


def test_weights_trained_for_another_action_frame_or_camera_are_refused_and_the_old_stay(
    tmp_path, names
):
    """A network trained on tool-frame moves would move wrongly on a base-frame cell, and one
    trained on the wrist camera would read the overhead image: no error of its own shows it."""
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(len(names), image_size=64))
    trained = {"policy_camera": "wrist", "policy_roi": [0.0, 0.0, 1.0, 1.0],
               "action_frame": "tool"}  # fmt: skip
    sha = save_checkpoint(tmp_path / "tool.ckpt", net, names, 5, {POLICY_SETTINGS_KEY: trained})
    slot = planner().weights  # the defaults: overhead camera, base frame
    old = slot.offer(str(tmp_path / "old.ckpt"), 1, write(tmp_path / "old.ckpt", names, 1))
    with pytest.raises(
        WeightsRefused,
        match=r"trained for policy_camera 'wrist' \(this policy has 'overhead'\); trained for "
        r"action_frame 'tool' \(this policy has 'base'\)",
    ):
        slot.offer(str(tmp_path / "tool.ckpt"), 5, sha)
    assert slot.newest() is old
    # the cell the network was trained for takes it
    cell = planner(policy_camera="wrist", action_frame="tool").weights
    assert cell.offer(str(tmp_path / "tool.ckpt"), 5, sha).sha256 == sha
