"""Camera frames and WeightsUpdates as a hostile or broken publisher sends them.

* an Image with any encoding, size, step and data: the policy node's frame check passes it
  (and it converts to an rgb8 array of its size) or raises ImageConversionError (a ValueError);
* a WeightsUpdate with any path, version, sha256, run id and task names, among real
  checkpoints: the policy's WeightsSlot loads it or raises WeightsRefused, and after every
  refusal the weights in place are the ones loaded before.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from sensor_msgs.msg import Image

from mtopt_bridge.image import image_to_numpy
from mtopt_core.checkpoint import save_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import load_task_registry
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import WeightsRefused, make_planner
from mtopt_policy.policy_node import check_frame

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1", "yuv422",
             "", "RGB8", "rgb8\n", "bayer_rggb8"]  # fmt: skip


CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "16UC1": 2}


@st.composite
def frames(draw):
    """Mostly self-consistent frames of a known encoding, with one field perturbed or not."""
    encoding = draw(st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=10)))
    height, width = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    step = width * CHANNELS.get(encoding, 3)
    size = step * height
    perturb = draw(st.sampled_from(["none", "step", "data", "height", "random"]))
    if perturb == "step":
        step = draw(st.one_of(st.integers(0, 200), st.sampled_from([2**31, 2**32 - 1])))
    elif perturb == "data":
        size = draw(st.integers(0, size + 10))
    elif perturb == "height":
        height = draw(st.integers(0, 2**31))
    data = bytes(size) if perturb != "random" else draw(st.binary(max_size=5000))
    msg = Image(height=height, width=width, encoding=encoding, step=step,
                is_bigendian=draw(st.integers(0, 1)))  # fmt: skip
    msg.data = data
    return msg


@given(msg=frames())
def test_any_image(msg):
    try:
        check_frame(msg)
    except ValueError as exc:
        assert str(exc)
        event("dropped")
        return
    event("accepted")
    array = image_to_numpy(msg, "rgb8")
    assert array.shape == (msg.height, msg.width, 3) and array.dtype == np.uint8


# ------------------------------------------------------------------------------ weights
@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> tuple[Path, list[tuple[str, str, int]]]:
    """Real checkpoints (path, sha256, step) in an allowed directory, and junk files."""
    directory = tmp_path_factory.mktemp("weights")
    names = load_task_registry().names
    files = []
    for k, step in enumerate((10, 20, 30)):
        torch.manual_seed(k)
        path = directory / f"qnet_{step}.ckpt"
        sha = save_checkpoint(path, QNet(QNetConfig.tiny(len(names), image_size=64)), names,
                              step=step)  # fmt: skip
        files.append((str(path), sha, step))
    (directory / "junk.ckpt").write_bytes(b"not a checkpoint" * 10)
    return directory, files


@given(
    file=st.integers(0, 4),
    path_kind=st.sampled_from(
        ["real", "real", "real", "junk", "missing", "outside", "dotdot", "empty", "dir"]
    ),
    version=st.one_of(st.integers(-5, 40), st.sampled_from([2**63 - 1, 10**7 + 11, 0])),
    sha=st.sampled_from(["right", "right", "wrong", "", "upper", "garbage"]),
    run_id=st.one_of(st.sampled_from(["run-a", "run-a", "run-b", ""]), st.text(max_size=80)),
    tasks=st.sampled_from(["none", "right", "right", "reversed", "other"]),
)
def test_any_weights_update(weights_dir, file, path_kind, version, sha, run_id, tasks):
    directory, files = weights_dir
    config = replace(PolicyConfig(seed=1, cem_population=8, cem_elites=2),
                     weights_dirs=(str(directory),))  # fmt: skip
    registry = load_task_registry()
    slot = make_planner(config.validate(), registry).weights
    # the cell holds the learner's weights of run-a, version 10
    first_path, first_sha, _ = files[0]
    slot.offer(first_path, 10, first_sha, registry.names, run_id="run-a", announced=True)
    slot.swap()
    before = slot.newest()
    path, right_sha, _ = files[min(file, 2)]
    path = {
        "real": path,
        "junk": str(directory / "junk.ckpt"),
        "missing": str(directory / "nope.ckpt"),
        "outside": "/etc/hostname",
        "dotdot": str(directory / ".." / Path(path).name),
        "empty": "",
        "dir": str(directory),
    }[path_kind]
    sha256 = {"right": right_sha, "wrong": "0" * 64, "": "", "upper": right_sha.upper(),
              "garbage": "zz"}[sha]  # fmt: skip
    task_names = {"none": (), "right": registry.names, "reversed": registry.names[::-1],
                  "other": ("lift-any",)}[tasks]  # fmt: skip
    try:
        slot.offer(path, version, sha256, task_names, run_id=run_id, announced=True)
    except WeightsRefused as exc:
        assert str(exc)
        assert slot.newest() is before  # the weights in place stay
        event("refused")
        return
    event("accepted")
    assert path_kind == "real" and sha in ("right", "upper")
