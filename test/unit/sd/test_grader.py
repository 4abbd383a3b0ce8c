"""The SD node's grading logic without ROS: request validation and checkpoint hot reload."""

import os

import numpy as np
import pytest
import torch
from sensor_msgs.msg import Image

from mtopt_bridge.image import numpy_to_image
from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.sd_model import (
    SDCheckpointError,
    SDModelConfig,
    SuccessDetector,
    checkpoint_bytes,
    save_checkpoint,
)
from mtopt_sd.grader import Grader, GradeRequestError

TASKS = ("lift-any", "lift-red", "lift-blue")


def model(seed, tasks=TASKS, size=32):
    torch.manual_seed(seed)
    cfg = SDModelConfig(
        task_names=tasks, image_size=size, channels=(8, 8), feature_dim=8, hidden_dim=8
    )
    return SuccessDetector(cfg)


def views(size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)]


def test_grade_rgb_and_bgr(tmp_path):
    path = tmp_path / "sd.ckpt"
    m = model(0)
    save_checkpoint(path, m, {"version": "a"})
    grader = Grader(path, TASKS)
    arrays = views()
    p = grader.grade_images([numpy_to_image(a, "rgb8") for a in arrays])
    expected = m.predict_proba(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)[None] / 255)
    assert p.dtype == np.float32 and p.shape == (3,)
    np.testing.assert_allclose(p, expected[0].numpy(), rtol=1e-5, atol=1e-6)
    bgr = [numpy_to_image(np.ascontiguousarray(a[:, :, ::-1]), "bgr8") for a in arrays]
    np.testing.assert_allclose(grader.grade_images(bgr), p, rtol=1e-6)


def test_rejects_bad_views(tmp_path):
    path = tmp_path / "sd.ckpt"
    save_checkpoint(path, model(0), {"version": "a"})
    grader = Grader(path, TASKS)
    good = [numpy_to_image(a, "rgb8") for a in views()]
    cases = [
        ([good[0], Image(), good[2]], "view 'left_shoulder' is missing (empty image)"),
        (
            [numpy_to_image(views(48)[0], "rgb8"), good[1], good[2]],
            "view 'overhead' is 48x48; the success detector (a@",
        ),
        (
            [good[0], good[1], numpy_to_image(views()[0][:, :, 0], "mono8")],
            "view 'right_shoulder' has encoding 'mono8'; send rgb8 or bgr8",
        ),
    ]
    for images, message in cases:
        with pytest.raises(GradeRequestError) as info:
            grader.grade_images(images)
        assert message in str(info.value)
    truncated = numpy_to_image(views()[0], "rgb8")
    truncated.data = truncated.data[:-5]
    with pytest.raises(GradeRequestError, match="view 'overhead': data holds"):
        grader.grade_images([truncated, good[1], good[2]])
    # All problems are reported at once.
    with pytest.raises(GradeRequestError, match="overhead.*left_shoulder.*right_shoulder"):
        grader.grade_images([Image(), Image(), Image()])


def test_hot_reload_and_refusals(tmp_path):
    path = tmp_path / "sd.ckpt"
    save_checkpoint(path, model(0), {"version": "a"})
    grader = Grader(path, TASKS)
    first = grader.version
    assert grader.poll() is None  # unchanged

    save_checkpoint(path, model(1), {"version": "b"})
    event = grader.poll()
    assert event.reloaded and event.version.startswith("b@") and grader.version == event.version
    second = grader.version
    assert second != first

    # Each kind of bad file is refused; the current model stays.
    good = checkpoint_bytes(model(2), {"version": "c"})
    nan = model(3)
    with torch.no_grad():
        nan.encoders[0].fc[0].bias[0] = float("inf")
    bad_files = {
        "truncated": good[:-10],
        "NaN or Inf": checkpoint_bytes(nan, {"version": "d"}),
        "task registry mismatch": checkpoint_bytes(model(4, tasks=("lift-any",))),
    }
    for reason, data in bad_files.items():
        atomic_write_bytes(path, data)
        event = grader.poll()
        assert not event.reloaded and reason in event.error, (reason, event)
        assert grader.version == second
        assert grader.poll() is None  # a refused file is not retried until it changes

    os.unlink(path)
    event = grader.poll()
    assert not event.reloaded and "disappeared" in event.error
    assert grader.poll() is None
    atomic_write_bytes(path, good)
    assert grader.poll().reloaded and grader.version.startswith("c@")
    # A different image size is fine after a reload; requests must then match it.
    save_checkpoint(path, model(5, size=40), {"version": "e"})
    assert grader.poll().reloaded and grader.image_size == 40


def test_initial_checkpoint_must_be_valid(tmp_path):
    with pytest.raises(SDCheckpointError, match="does not exist"):
        Grader(tmp_path / "missing.ckpt")
    path = tmp_path / "sd.ckpt"
    save_checkpoint(path, model(0), {"version": "a"})
    with pytest.raises(SDCheckpointError, match="task registry mismatch"):
        Grader(path, ("lift-any", "lift-red"))
