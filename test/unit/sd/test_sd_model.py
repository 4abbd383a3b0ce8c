"""SD model shapes and the checkpoint file: round trip, atomic write + sha256, refusals."""

import hashlib
import io

import numpy as np
import pytest
import torch

from mtopt_core.sd_model import (
    CHECKPOINT_MAGIC,
    SDCheckpointError,
    SDModelConfig,
    SuccessDetector,
    checkpoint_bytes,
    images_to_tensor,
    load_checkpoint,
    save_checkpoint,
)

TASKS = ("lift-any", "lift-red", "lift-blue")


def tiny(view_encoders="shared", tasks=TASKS):
    cfg = SDModelConfig(
        task_names=tasks, image_size=32, view_encoders=view_encoders, channels=(8, 8, 16),
        feature_dim=16, hidden_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    return SuccessDetector(cfg)


@pytest.mark.parametrize("view_encoders", ["shared", "separate"])
def test_forward_shapes(view_encoders):
    model = tiny(view_encoders)
    assert len(model.encoders) == (1 if view_encoders == "shared" else 3)
    x = torch.rand(5, 3, 3, 32, 32)
    assert model(x).shape == (5, 3)
    p = model.predict_proba(x)
    assert p.shape == (5, 3) and float(p.min()) >= 0 and float(p.max()) <= 1
    assert model.training  # predict_proba restores the mode
    with pytest.raises(ValueError, match=r"SD input must be \(B, 3, 3, 32, 32\)"):
        model(torch.rand(5, 3, 3, 48, 48))


def test_views_are_not_interchangeable():
    # The fused feature keeps camera order: swapping two views changes the output.
    model = tiny()
    x = torch.rand(2, 3, 3, 32, 32)
    swapped = x[:, [1, 0, 2]]
    assert not torch.allclose(model(x), model(swapped))


def test_images_to_tensor():
    hwc = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    t = images_to_tensor(hwc)
    assert t.shape == (2, 3, 3, 32, 32) and float(t.max()) <= 1.0
    assert t[1, 2, 0, 5, 7] == pytest.approx(hwc[1, 2, 5, 7, 0] / 255.0)
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(hwc.astype(np.float32))


def test_checkpoint_round_trip_and_sidecar(tmp_path):
    model = tiny()
    path = tmp_path / "sd.ckpt"
    sha = save_checkpoint(path, model, {"version": "v7", "steps": 3})
    data = path.read_bytes()
    assert data.startswith(CHECKPOINT_MAGIC)
    assert sha == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "sd.ckpt.sha256").read_text() == f"{sha}  sd.ckpt\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd.ckpt", "sd.ckpt.sha256"]  # no temp
    loaded = load_checkpoint(path, expected_tasks=TASKS, expected_sha256=sha)
    assert loaded.version == f"v7@{sha[:12]}"
    assert loaded.meta["steps"] == 3 and not loaded.model.training
    x = torch.rand(4, 3, 3, 32, 32)
    assert torch.equal(loaded.model.predict_proba(x), model.predict_proba(x))


def refusal(path, **kwargs):
    with pytest.raises(SDCheckpointError) as info:
        load_checkpoint(path, **kwargs)
    assert str(path) in str(info.value)
    return str(info.value)


def test_checkpoint_refusals(tmp_path):
    good = checkpoint_bytes(tiny(), {"version": "v1"})
    path = tmp_path / "sd.ckpt"
    assert "does not exist" in refusal(path)
    path.write_bytes(b"")
    assert "empty" in refusal(path)
    path.write_bytes(good[: len(good) // 2])
    assert "truncated or corrupted" in refusal(path)
    path.write_bytes(good[: len(CHECKPOINT_MAGIC) + 10])
    assert "truncated" in refusal(path)
    flipped = bytearray(good)
    flipped[-100] ^= 0xFF
    path.write_bytes(bytes(flipped))
    assert "truncated or corrupted" in refusal(path)
    path.write_bytes(b"PK\x03\x04" + good[20:])
    assert "not an SD checkpoint" in refusal(path)
    path.write_bytes(good)
    assert "task registry mismatch" in refusal(path, expected_tasks=("lift-any",))
    assert "does not match the expected" in refusal(path, expected_sha256="0" * 64)

    nan_model = tiny()
    with torch.no_grad():
        nan_model.head[0].weight[0, 0] = float("nan")
    path.write_bytes(checkpoint_bytes(nan_model))
    assert "'head.0.weight' contains NaN or Inf" in refusal(path)


def forged(content: dict) -> bytes:
    """A well-formed file (valid header and hash) around an arbitrary payload."""
    buf = io.BytesIO()
    torch.save(content, buf)
    payload = buf.getvalue()
    return CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def test_checkpoint_architecture_mismatch(tmp_path):
    model = tiny()
    state = model.state_dict()
    state.pop("head.3.bias")
    path = tmp_path / "sd.ckpt"
    path.write_bytes(forged({"config": model.config.to_dict(), "state_dict": state, "meta": {}}))
    assert "do not match the stored architecture" in refusal(path)
    path.write_bytes(forged({"config": {"bogus": 1}, "state_dict": {}, "meta": {}}))
    assert "cannot decode" in refusal(path)


def test_config_validation():
    with pytest.raises(ValueError, match="view_encoders"):
        SDModelConfig(task_names=TASKS, view_encoders="pooled")
    with pytest.raises(ValueError, match="duplicates"):
        SDModelConfig(task_names=("a", "a"))
    cfg = SDModelConfig(task_names=TASKS, image_size=96)
    assert SDModelConfig.from_dict(cfg.to_dict()) == cfg
    assert SuccessDetector(cfg)(torch.rand(1, 3, 3, 96, 96)).shape == (1, 3)


CROPS = ((0.5, 0.0, 1.0, 0.5), (0.0, 0.0, 1.0, 1.0), (0.25, 0.5, 0.75, 1.0))


def cropped(crops=CROPS, encoder_size=16):
    cfg = SDModelConfig(
        task_names=TASKS, image_size=32, crops=crops, encoder_size=encoder_size,
        channels=(8, 8, 16), feature_dim=16, hidden_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    return SuccessDetector(cfg)


def test_views_are_the_regions_of_interest_at_encoder_size():
    model = cropped()
    images = torch.zeros(2, 3, 3, 32, 32)
    images[:, 0, :, :16, 16:] = 1.0  # overhead: exactly its region of interest is white
    images[:, 2, 1, 16:, 8:24] = 1.0  # right_shoulder: its region is pure green
    views = model.select_views(images)
    assert views.shape == (2, 3, 3, 16, 16)
    assert torch.allclose(views[:, 0], torch.ones_like(views[:, 0]), atol=1e-5)
    assert torch.allclose(views[:, 2, 1], torch.ones(2, 16, 16), atol=1e-5)
    assert float(views[:, 2, 0].abs().max()) < 1e-5
    # the middle view is the whole image, shrunk
    assert torch.allclose(views[:, 1], images[:, 1, :, ::2, ::2], atol=1e-5)
    assert model(images).shape == (2, len(TASKS))
    # no crops and no resizing: the images themselves
    plain = tiny()
    assert plain.select_views(images) is images


def test_crops_survive_the_checkpoint(tmp_path):
    model = cropped()
    path = tmp_path / "sd.ckpt"
    save_checkpoint(path, model)
    loaded = load_checkpoint(path)
    assert loaded.config.crops == CROPS and loaded.config.encoder_size == 16
    images = torch.rand(1, 3, 3, 32, 32)
    assert torch.allclose(loaded.model.predict_proba(images), model.predict_proba(images))


@pytest.mark.parametrize(
    "crops, match",
    [
        (CROPS[:2], "one box per camera"),
        ((CROPS[0], CROPS[1], (0.5, 0.5, 0.4, 1.0)), "right_shoulder"),
        ((CROPS[0], CROPS[1], (0.0, 0.0, 1.0, 1.5)), "right_shoulder"),
    ],
)
def test_bad_crops_name_the_camera(crops, match):
    with pytest.raises(ValueError, match=match):
        SDModelConfig(task_names=TASKS, image_size=32, crops=crops)
