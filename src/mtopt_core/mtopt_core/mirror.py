"""The wrist camera's mirror symmetry: a data augmentation of Q-learning (`augment_mirror`).

The wrist camera sits in the gripper's x-z plane (the action's tool frame) and its image's
horizontal axis is the tool's y axis. The gripper, gravity and contact physics are symmetric
about that plane, so reflecting a transition about it gives another transition of the same
task with the same outcome: every image flipped left-right, the tool-frame y move and the yaw
turn negated; the gripper and terminate commands, the height and the labels unchanged (the
objects become their mirror images). For a policy that acts in the tool frame through such a
camera this doubles the scenes the network sees, and scenes are what aiming needs
(`docs/results/learning.md`, the aim probe). It is not valid for a camera fixed to the cell
or for base-frame moves: the learner refuses it unless the policy camera is "wrist" and the
action frame "tool" (`MIRROR_POLICY_SETTINGS`). A robot cell whose wrist camera is mounted off
that plane must not use it.
"""

from __future__ import annotations

import numpy as np

from mtopt_core.action import YAW

#: The policy settings under which the mirror is a symmetry: (name, required value).
MIRROR_POLICY_SETTINGS = (("policy_camera", "wrist"), ("action_frame", "tool"))
#: Action components that change sign under the mirror: the tool-frame y move and the yaw.
MIRRORED_ACTION_COMPONENTS = (1, YAW)


def mirror_images(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, H, W, C) images with the rows of `mask` (B,) bool flipped left-right (a copy)."""
    if images.ndim != 4 or mask.shape != images.shape[:1]:
        raise ValueError(f"need (B, H, W, C) images and a (B,) mask, got {images.shape}, "
                         f"{mask.shape}")  # fmt: skip
    out = images.copy()
    out[mask] = images[mask][:, :, ::-1]
    return out


def mirror_actions(actions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalized actions (B, 6) with the rows of `mask` (B,) reflected (a copy)."""
    if actions.ndim != 2 or mask.shape != actions.shape[:1]:
        raise ValueError(f"need (B, 6) actions and a (B,) mask, got {actions.shape}, "
                         f"{mask.shape}")  # fmt: skip
    out = actions.copy()
    for k in MIRRORED_ACTION_COMPONENTS:
        out[mask, k] = -out[mask, k]
    return out


def mirror_settings_error(
    policy_settings: dict,
    option: str = "augment_mirror",
    reason: str = "the wrist camera's symmetry",
) -> str | None:
    """Why `option` (the mirror, or another augmentation built on the wrist camera in the tool
    frame, e.g. `augment_translate`) is not valid under these policy settings (None: it is)."""
    wrong = [
        f"{name} is {policy_settings.get(name)!r}"
        for name, value in MIRROR_POLICY_SETTINGS
        if policy_settings.get(name) != value
    ]
    if not wrong:
        return None
    need = " and ".join(f"{name} {value!r}" for name, value in MIRROR_POLICY_SETTINGS)
    return f"{option} needs {need} ({reason}); {', '.join(wrong)}"
