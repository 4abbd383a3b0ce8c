"""Multi-task visual success detector (SD) model and its checkpoint file (seed Sec. XI).

    overhead, left_shoulder, right_shoulder (final RGB images, H x W each)
      -> optional fixed region of interest per camera, resized to the encoder size
      -> image encoder per view (conv stack -> 4 x 4 map -> FC feature), weights shared
         across views by default ("shared"), or one encoder per camera ("separate")
      -> concatenation of the view features in camera order (fusion)
      -> 2 FC layers -> one logit per task (registry order) -> sigmoid = P(success | task)

The seed's SD is the QT-Opt architecture minus the action conditioning. Here the images are
small (64-96 px) so it trains on a CPU; see src/mtopt_sd/README.md for the measured comparison
of shared vs separate view encoders.

Checkpoint file format (one file, so a reader can never pair the wrong hash with the payload):

    b"MTOPT-SD-CKPT 1\\n" + sha256(payload) as 64 hex digits + b"\\n" + payload

where payload is a `torch.save` of {"config": ..., "state_dict": ..., "meta": ...}. It is
written atomically (temp file, fsync, rename, fsync of the directory) and a `<file>.sha256`
sidecar in `sha256sum` format holds the hash of the whole file for tools and WeightsUpdate
messages. `load_checkpoint` refuses truncated, corrupted, non-finite or mismatched files with a
`SDCheckpointError` that says which.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtopt_core.atomic_io import atomic_write_bytes

CAMERAS: tuple[str, ...] = ("overhead", "left_shoulder", "right_shoulder")
VIEW_ENCODERS = ("shared", "separate")
POOLINGS = ("grid", "global")

CHECKPOINT_MAGIC = b"MTOPT-SD-CKPT 1\n"
_DIGEST_LEN = 64


@dataclass(frozen=True)
class SDModelConfig:
    """Architecture of the success detector.

    Fields:
        task_names: output order of the per-task probabilities (the task registry's order).
        cameras: input views, in the order the model expects them.
        image_size: side of the square RGB input (camera) images [px].
        crops: region of interest of each camera, in `cameras` order, as (x0, y0, x1, y1)
            fractions of the image side; () = whole images. With a fixed grading pose the
            evidence sits in known places (the gripper in front of one camera, the plate in
            the others): looking only there lets a 64 px encoder see it at camera resolution
            and keeps the clutter of the bins, which differs in every scene and would be
            memorised, out of the model.
        encoder_size: side [px] each view is resized to for the encoder (0 = image_size).
        view_encoders: "shared": one encoder applied to every view (weights tied; the fusion
            layer still knows which feature came from which camera by its position);
            "separate": one encoder per camera.
        channels: output channels of the encoder's conv layers; each halves the resolution
            (the first uses a 5x5 kernel, the others 3x3).
        pooling: how a view's last feature map becomes a vector: "grid": average-pooled to
            4 x 4 and flattened (keeps coarse position); "global": global max and average
            pooling concatenated (position-invariant: "is there an X in the gripper anywhere").
        feature_dim: size of each view's feature vector.
        hidden_dim: width of the hidden FC layer after fusion.
        dropout: dropout before the output layer (training only).
    """

    task_names: tuple[str, ...]
    cameras: tuple[str, ...] = CAMERAS
    image_size: int = 64
    crops: tuple[tuple[float, float, float, float], ...] = ()
    encoder_size: int = 0
    view_encoders: str = "shared"
    channels: tuple[int, ...] = (32, 32, 64, 64)
    pooling: str = "grid"
    feature_dim: int = 128
    hidden_dim: int = 256
    dropout: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_names", tuple(str(t) for t in self.task_names))
        object.__setattr__(self, "cameras", tuple(str(c) for c in self.cameras))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(
            self, "crops", tuple(tuple(float(v) for v in box) for box in self.crops)
        )
        if self.crops:
            if len(self.crops) != len(self.cameras):
                raise ValueError(
                    f"SDModelConfig.crops needs one box per camera {self.cameras}, got "
                    f"{len(self.crops)}"
                )
            for camera, box in zip(self.cameras, self.crops, strict=True):
                ok = len(box) == 4 and 0.0 <= box[0] < box[2] <= 1.0 and 0.0 <= box[1] < box[3]
                if not ok or box[3] > 1.0:
                    raise ValueError(
                        f"SDModelConfig.crops for {camera} must be (x0, y0, x1, y1) with "
                        f"0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {box}"
                    )
        if not isinstance(self.encoder_size, int) or self.encoder_size < 0:
            raise ValueError(
                f"SDModelConfig.encoder_size must be an int >= 0, got {self.encoder_size!r}"
            )
        if not self.task_names:
            raise ValueError("SDModelConfig.task_names must list at least one task")
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"SDModelConfig.task_names has duplicates: {self.task_names}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"SDModelConfig.cameras must be distinct names: {self.cameras}")
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ValueError(
                f"SDModelConfig.image_size must be an int >= 16, got {self.image_size!r}"
            )
        if self.view_encoders not in VIEW_ENCODERS:
            raise ValueError(
                f"SDModelConfig.view_encoders must be one of {VIEW_ENCODERS}, "
                f"got {self.view_encoders!r}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"SDModelConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}"
            )
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"SDModelConfig.channels must be positive: {self.channels}")
        if self.view_size >> len(self.channels) < 1:
            raise ValueError(
                f"SDModelConfig: views of {self.view_size} px are too small for "
                f"{len(self.channels)} stride-2 layers"
            )
        for name in ("feature_dim", "hidden_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SDModelConfig.{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SDModelConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def view_size(self) -> int:
        """Side [px] of the images the encoder sees."""
        return self.encoder_size or self.image_size

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["crops"] = [list(box) for box in self.crops]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SDModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SDModelConfig fields: {sorted(unknown)}")
        return cls(**data)


class ViewEncoder(nn.Module):
    """Conv stack for one camera image: (N, 3, S, S) float -> (N, feature_dim)."""

    def __init__(self, config: SDModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(config.channels):
            kernel = 5 if i == 0 else 3
            layers += [
                nn.Conv2d(cin, cout, kernel, stride=2, padding=kernel // 2),
                nn.GroupNorm(min(8, cout), cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.pooling = config.pooling
        # "grid": a fixed 4 x 4 map keeps coarse position for any input size.
        pooled = cin * 16 if config.pooling == "grid" else cin * 2
        self.fc = nn.Sequential(nn.Linear(pooled, config.feature_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if self.pooling == "grid":
            x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        else:
            x = torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)
        return self.fc(x)


class SuccessDetector(nn.Module):
    """Three (or `len(cameras)`) final images -> one success logit per task."""

    def __init__(self, config: SDModelConfig):
        super().__init__()
        self.config = config
        n_views = len(config.cameras)
        n_encoders = 1 if config.view_encoders == "shared" else n_views
        self.encoders = nn.ModuleList(ViewEncoder(config) for _ in range(n_encoders))
        self.head = nn.Sequential(
            nn.Linear(n_views * config.feature_dim, config.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.num_tasks),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, T) for float images (B, V, 3, S, S) in [0, 1]."""
        return self.classify(self.select_views(images))

    def select_views(self, images: torch.Tensor) -> torch.Tensor:
        """Camera images (B, V, 3, S, S) -> the encoder's views (B, V, 3, s, s): each camera's
        region of interest resized to `view_size` (identity without crops and resizing)."""
        cfg = self.config
        expected = (len(cfg.cameras), 3, cfg.image_size, cfg.image_size)
        if images.ndim != 5 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"SD input must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        size, side = cfg.view_size, cfg.image_size
        if not cfg.crops and size == side:
            return images
        boxes = cfg.crops or ((0.0, 0.0, 1.0, 1.0),) * len(cfg.cameras)
        views = []
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            region = images[
                :, i, :, round(y0 * side) : round(y1 * side), round(x0 * side) : round(x1 * side)
            ]
            views.append(
                nn.functional.interpolate(
                    region, size=(size, size), mode="bilinear", align_corners=False,
                    antialias=region.shape[-1] > size,
                )
            )  # fmt: skip
        return torch.stack(views, dim=1)

    def classify(self, views: torch.Tensor) -> torch.Tensor:
        """Logits (B, T) for the encoder's views (B, V, 3, s, s) in [0, 1]."""
        x = views * 2.0 - 1.0
        b, v = x.shape[:2]
        if len(self.encoders) == 1:
            features = self.encoders[0](x.flatten(0, 1)).view(b, v, -1)
        else:
            features = torch.stack([enc(x[:, i]) for i, enc in enumerate(self.encoders)], dim=1)
        return self.head(features.flatten(1))

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """P(success) per task (B, T), in eval mode, without gradients."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(images))
        finally:
            self.train(was_training)


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (B, V, H, W, 3) or (B, V, 3, H, W) -> float (B, V, 3, H, W) in [0, 1]."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {t.dtype}")
    if t.ndim != 5:
        raise ValueError(f"expected (B, V, H, W, 3) images, got shape {tuple(t.shape)}")
    if t.shape[-1] == 3 and t.shape[2] != 3:
        t = t.permute(0, 1, 4, 2, 3)
    return t.to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------------------------
# Checkpoints


class SDCheckpointError(RuntimeError):
    """A success-detector checkpoint file cannot be used; the message says why (and names the
    file). Not `mtopt_core.checkpoint.CheckpointError` (Q-network weights): code that loads both
    catches each by its own name."""


@dataclass
class LoadedCheckpoint:
    """A loaded success detector with what identifies it."""

    model: SuccessDetector
    config: SDModelConfig
    meta: dict[str, Any]
    sha256: str  # of the whole file, as in the .sha256 sidecar
    path: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Model version string: `<meta version>@<first 12 hex digits of the file sha256>`."""
        return f"{self.meta.get('version', 'sd')}@{self.sha256[:12]}"


def checkpoint_bytes(model: SuccessDetector, meta: dict[str, Any] | None = None) -> bytes:
    """Serialise a model (+ metadata: plain str/int/float/bool/list/dict values) to file bytes."""
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(
        {"config": model.config.to_dict(), "state_dict": state, "meta": dict(meta or {})}, buffer
    )
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    return CHECKPOINT_MAGIC + digest + b"\n" + payload


def save_checkpoint(
    path: str | os.PathLike, model: SuccessDetector, meta: dict[str, Any] | None = None
) -> str:
    """Write the checkpoint atomically, then its `<path>.sha256` sidecar; return the sha256."""
    data = checkpoint_bytes(model, meta)
    sha = hashlib.sha256(data).hexdigest()
    path = Path(path)
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_name(path.name + ".sha256"), f"{sha}  {path.name}\n".encode())
    return sha


def load_checkpoint(
    path: str | os.PathLike,
    expected_tasks: tuple[str, ...] | list[str] | None = None,
    expected_sha256: str | None = None,
) -> LoadedCheckpoint:
    """Load and verify a checkpoint; the model comes back in eval mode on the CPU.

    Refuses (SDCheckpointError) a missing, empty, truncated or corrupted file (embedded hash
    mismatch), a file that is not an SD checkpoint, parameters that are NaN/Inf, a state dict
    that does not fit the stored config, a task list other than `expected_tasks`, and a file
    whose sha256 differs from `expected_sha256`.
    """
    path = Path(path)

    def fail(problem: str) -> SDCheckpointError:
        return SDCheckpointError(f"SD checkpoint {path}: {problem}")

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("file does not exist") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise fail("file is empty")
    if not data.startswith(CHECKPOINT_MAGIC):
        raise fail("not an SD checkpoint (bad header)")
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise fail(f"sha256 {sha} does not match the expected {expected_sha256}")
    header_end = len(CHECKPOINT_MAGIC) + _DIGEST_LEN + 1
    if len(data) < header_end:
        raise fail("truncated (header incomplete)")
    digest = data[len(CHECKPOINT_MAGIC) : header_end - 1].decode("ascii", "replace")
    payload = data[header_end:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise fail(
            f"truncated or corrupted: payload of {len(payload)} bytes does not match its "
            "embedded sha256"
        )
    try:
        content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        config = SDModelConfig.from_dict(dict(content["config"]))
        state = content["state_dict"]
        meta = dict(content.get("meta", {}))
    except Exception as exc:  # any decoding problem is a bad file, reported as such
        raise fail(f"cannot decode: {exc}") from exc
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise fail(f"parameter {name!r} contains NaN or Inf")
    if expected_tasks is not None and tuple(expected_tasks) != config.task_names:
        raise fail(
            f"trained for tasks {list(config.task_names)}, expected {list(expected_tasks)} "
            "(task registry mismatch)"
        )
    model = SuccessDetector(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise fail(f"parameters do not match the stored architecture: {exc}") from exc
    model.eval()
    return LoadedCheckpoint(model=model, config=config, meta=meta, sha256=sha, path=str(path))
