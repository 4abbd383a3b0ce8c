"""Q-network checkpoints: written atomically, verified before anything is loaded.

File layout (one file, `<ckpt>`):

    8 bytes   magic b"MTOPTQ01"
    8 bytes   payload length, little-endian unsigned
    32 bytes  sha256 of the payload
    payload   torch.save of {format, qnet_config, task_names, state_dict, step, metadata, extra}

Next to it, `<ckpt>.sha256` holds the sha256 of the whole file in `sha256sum` format (this is
the hash a WeightsUpdate message carries). Both are written as temp file, fsync, rename, so a
reader never sees a half-written checkpoint under the final name.

Loading refuses (CheckpointError naming the file and the reason) a file that is missing,
truncated, has a wrong magic, a payload hash mismatch, a sidecar or expected hash mismatch,
an architecture (QNetConfig) or task-list mismatch, or a NaN/Inf tensor. Weights are copied
into the caller's network only after every check passed, so on error it keeps its weights.

A network only works with the camera, crop and action frame it was trained for, and nothing in
its tensors says which they were. The learner records them in the metadata
(`POLICY_SETTINGS_KEY`: those policy node parameters and their values), and
`policy_settings_mismatch` tells a reader which of its own settings disagree. Checkpoints
written before the record existed carry none and match anything.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.qnet import QNet, QNetConfig

MAGIC = b"MTOPTQ01"
HEADER = struct.Struct("<8sQ32s")
FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".sha256"
#: Metadata key of the policy settings a network was trained for: {parameter: value}.
POLICY_SETTINGS_KEY = "policy_settings"
#: The policy node parameters that give the network's input image and output move their meaning.
POLICY_SETTINGS = ("policy_camera", "policy_roi", "action_frame")


class CheckpointError(ValueError):
    """A checkpoint was refused. `path` names the file, `reason` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"checkpoint {path} refused: {reason}")


@dataclass
class Checkpoint:
    """The verified content of a checkpoint file."""

    path: str
    qnet_config: QNetConfig
    task_names: tuple[str, ...]
    state_dict: dict[str, torch.Tensor]
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    file_sha256: str = ""


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    qnet: QNet,
    task_names: Sequence[str],
    step: int = 0,
    metadata: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write a checkpoint of `qnet` (and its sidecar hash); returns the file's sha256.

    `extra` may hold more tensors (optimizer state, target networks) for resuming training;
    it must contain only tensors, numbers, strings and lists/dicts of them.
    """
    if len(task_names) != qnet.config.num_tasks:
        raise ValueError(
            f"{len(task_names)} task names for a network with {qnet.config.num_tasks} tasks"
        )
    state = {k: v.detach().cpu().clone() for k, v in qnet.state_dict().items()}
    _check_finite(path, state, "state_dict")
    body = {
        "format": FORMAT_VERSION,
        "qnet_config": qnet.config.to_dict(),
        "task_names": list(task_names),
        "state_dict": state,
        "step": int(step),
        "metadata": {"saved_unix_time": time.time(), **dict(metadata or {})},
        "extra": dict(extra or {}),
    }
    buf = io.BytesIO()
    torch.save(body, buf)
    payload = buf.getvalue()
    data = HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data)
    atomic_write_bytes(sidecar_path(path), f"{digest}  {Path(path).name}\n".encode())
    return digest


#: Largest checkpoint file read (the `paper` net with its training state is far smaller); a
#: larger file is refused before it is read into memory.
MAX_CHECKPOINT_BYTES = 512 * 1024**2


def read_checkpoint(
    path: str | os.PathLike,
    expected_sha256: str | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> Checkpoint:
    """Read and verify a checkpoint file (integrity, hashes, finiteness). Only a regular file
    of at most `max_bytes` is opened (a FIFO or device would block or never end)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(path, "not a regular file")
    if info.st_size > max_bytes:
        raise CheckpointError(
            path, f"{info.st_size} bytes, larger than the limit of {max_bytes} bytes"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # a file grown since the stat is still bounded
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise CheckpointError(path, f"larger than the limit of {max_bytes} bytes")
    if len(data) < HEADER.size:
        raise CheckpointError(path, f"truncated: {len(data)} bytes, shorter than the header")
    magic, length, payload_hash = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(path, "not an MT-Opt checkpoint (wrong magic)")  # no file bytes
    payload = data[HEADER.size :]
    if len(payload) != length:
        kind = "truncated" if len(payload) < length else "has trailing bytes"
        raise CheckpointError(
            path, f"{kind}: payload is {len(payload)} bytes, header says {length}"
        )
    if hashlib.sha256(payload).digest() != payload_hash:
        raise CheckpointError(path, "sha256 mismatch: the payload is corrupted")
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        raise CheckpointError(
            path, f"sha256 mismatch: file is {digest}, expected {expected_sha256}"
        )
    side = sidecar_path(path)
    if side.exists():
        recorded = side.read_text().split()
        if not recorded or recorded[0].lower() != digest:
            raise CheckpointError(
                path, f"sha256 mismatch with {side.name}: file is {digest}, recorded "
                f"{recorded[0] if recorded else '<empty>'}"
            )  # fmt: skip
    try:
        body = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad file
        raise CheckpointError(path, f"unreadable payload: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            path, f"unsupported format {body.get('format') if isinstance(body, dict) else body!r}"
        )
    try:
        config = QNetConfig.from_dict(dict(body["qnet_config"]))
        tasks = tuple(str(t) for t in body["task_names"])
        state = dict(body["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"malformed content: {exc}") from exc
    _check_finite(path, state, "state_dict")
    _check_finite(path, body.get("extra", {}), "extra")
    return Checkpoint(
        path=str(path),
        qnet_config=config,
        task_names=tasks,
        state_dict=state,
        step=int(body.get("step", 0)),
        metadata=dict(body.get("metadata", {})),
        extra=dict(body.get("extra", {})),
        file_sha256=digest,
    )


def policy_settings_of(source: Any) -> dict[str, Any]:
    """The `POLICY_SETTINGS` of a config-like object (attributes of those names), as a
    checkpoint records them: the ROI as a list of floats."""
    settings = {name: getattr(source, name) for name in POLICY_SETTINGS}
    settings["policy_roi"] = [float(v) for v in settings["policy_roi"]]
    return settings


def policy_settings_mismatch(
    metadata: Mapping[str, Any], own: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(name, trained value, own value) of every setting recorded in a checkpoint's `metadata`
    that `own` has with another value (numbers within 1e-6 are equal). Settings either side
    lacks are not compared."""
    trained = metadata.get(POLICY_SETTINGS_KEY) or {}
    if not isinstance(trained, Mapping):
        return [(POLICY_SETTINGS_KEY, trained, dict(own))]
    return [
        (name, trained[name], own[name])
        for name in POLICY_SETTINGS
        if name in trained and name in own and not _same_setting(trained[name], own[name])
    ]


def describe_mismatch(mismatch: Sequence[tuple[str, Any, Any]], own_label: str) -> str:
    """E.g. "trained for action_frame 'tool' (this policy has 'base')"."""
    return "; ".join(
        f"trained for {name} {trained!r} ({own_label} {own!r})" for name, trained, own in mismatch
    )


def _same_setting(a: Any, b: Any) -> bool:
    """Equal strings, numbers within 1e-6, or sequences of such; anything else (a crafted
    record may hold a tensor) is different."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-6
    return isinstance(a, str) and isinstance(b, str) and a == b


def _check_finite(path: str | os.PathLike, obj: Any, where: str) -> None:
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            raise CheckpointError(path, f"contains NaN or Inf in {where}")
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise CheckpointError(path, f"contains NaN or Inf in {where}")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_finite(path, v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(path, v, f"{where}[{i}]")


def check_compatible(
    ckpt: Checkpoint, module: nn.Module, config: QNetConfig, task_names: Sequence[str]
) -> None:
    """Raise CheckpointError unless `ckpt` fits `module` (same config, tasks, tensor shapes)."""
    if ckpt.task_names != tuple(task_names):
        raise CheckpointError(
            ckpt.path,
            f"task list mismatch: checkpoint has {list(ckpt.task_names)}, expected "
            f"{list(task_names)}",
        )
    if ckpt.qnet_config != config:
        a, b = ckpt.qnet_config.to_dict(), config.to_dict()
        diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
        raise CheckpointError(ckpt.path, f"architecture mismatch (checkpoint, expected): {diff}")
    own = module.state_dict()
    if set(own) != set(ckpt.state_dict):
        missing = sorted(set(own) - set(ckpt.state_dict))
        unexpected = sorted(set(ckpt.state_dict) - set(own))
        raise CheckpointError(
            ckpt.path, f"architecture mismatch: missing {missing}, unexpected {unexpected}"
        )
    for k, v in own.items():
        if tuple(ckpt.state_dict[k].shape) != tuple(v.shape):
            raise CheckpointError(
                ckpt.path,
                f"architecture mismatch: {k} is {tuple(ckpt.state_dict[k].shape)}, "
                f"expected {tuple(v.shape)}",
            )


def load_qnet_weights(
    qnet: QNet,
    path: str | os.PathLike,
    task_names: Sequence[str],
    expected_sha256: str | None = None,
) -> Checkpoint:
    """Verify a checkpoint and copy its weights into `qnet`. On any CheckpointError the
    network is left untouched (the caller keeps its previous weights)."""
    ckpt = read_checkpoint(path, expected_sha256)
    check_compatible(ckpt, qnet, qnet.config, task_names)
    qnet.load_state_dict(ckpt.state_dict, strict=True)
    return ckpt


def qnet_from_checkpoint(
    path: str | os.PathLike,
    task_names: Sequence[str] | None = None,
    expected_sha256: str | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> tuple[QNet, Checkpoint]:
    """Build a QNet from a checkpoint's own config (task list checked if given)."""
    ckpt = read_checkpoint(path, expected_sha256, max_bytes)
    qnet = QNet(ckpt.qnet_config)
    check_compatible(ckpt, qnet, ckpt.qnet_config, task_names or ckpt.task_names)
    qnet.load_state_dict(ckpt.state_dict, strict=True)
    return qnet, ckpt
