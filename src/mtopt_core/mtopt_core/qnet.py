"""The MT-Opt Q-network Q(s, a, T) (seed Fig. 9, after QT-Opt).

    image (uint8 H x W x 3)
      -> trunk: 7 conv layers (first strided, max-pools after the first and after the last)
      -> feature map F (C x h x w)
    [action (6), gripper closed (1), gripper height (1), object detected (1),
     steps remaining (1, optional), one-hot task (n)]
      -> FC layers -> vector of C, tiled over h x w and added to F
      -> 9 conv layers (max-pool after the 6th) -> flatten
      -> 2 FC layers -> logit -> sigmoid, Q in [0, 1]

The forward pass is split in two so CEM can evaluate many actions for one state cheaply:
`trunk(images) -> features` runs every layer before the action enters once per state,
`head_logits(features, action, ...)` runs per candidate action on features broadcast with
`expand_features`.

The multi-headed variant the seed compares against (Appendix A, Fig. 10) keeps the task one-hot
input and replaces the 2 output FC layers by one head of 3 FC layers per task; each sample's
Q is read from the head of its task.

"Object detected" is the gripper's own report that its fingers stopped before closing fully
(`GripperState.object_detected`; most industrial grippers give it). It tells a held object from
an empty closed gripper, which the 64 px policy image often cannot. Checkpoints written before
the input existed load with `object_detected_input=False` and behave as they did.

"Steps remaining" (`step_horizon` H > 0) is (H - t) / H, clipped to [0, 1], for the observation
at step index t of its episode: with it, the step limit of an episode is part of the state, so
a time-limit end is no longer an unobservable terminal. Off (H = 0) by default.

With GroupNorm, the fused state vector is a per-channel constant over the feature map, and a
GroupNorm right after it removes each group's mean of it, i.e. much of the action signal.
`fuse_after_norm` adds the fused vector after the first head conv's normalization instead
(conv -> GroupNorm -> + state -> ReLU), so it reaches the ReLU whole; the `compact` preset uses
it. Checkpoints written before the option existed load with the original layout.

The fused vector is the same at every position of the map, and convolutions treat every
position alike, so before the output FC layers nothing in the network can relate the action to
*where* something is in the image (moving toward an object seen on the left). With
`position_embedding` a learned map (C x h x w, zero at the start) is added where the fused
vector is: after the ReLU, a channel is then active where the image feature, the action's bias
and the position's bias together exceed 0, i.e. in a region of the image the action selects.

With `spatial_softmax` the head convs are replaced by a keypoint head (Levine et al. 2016,
"End-to-end training of deep visuomotor policies"): each trunk channel's softmax over the
feature map gives an expected image position (x, y); those positions, each channel's mean
activation and the fused state go through 3 FC layers. Where something is in the image is then
an explicit input the FC layers can compare with the action's move.

With `grasp_head` the output FC layers get a second output next to Q's logit: the logit of
"after this action the closed gripper holds an object" (the gripper's object-detected flag of
the next observation), trained as an auxiliary loss (`TrainerConfig.grasp_weight`) on the
transitions whose next observation has the gripper closed. Q of a close is learned from a
reward several steps later; whether the close caught something is known at the next step, in
every episode, and it shapes the same layers that score the close. Acting ignores it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mtopt_core.action import ACTION_DIM

NORMS = ("none", "group")


@dataclass(frozen=True)
class QNetConfig:
    """Architecture of the Q-network. All layers keep `channels` feature maps (the fused
    state/action vector is added to the trunk's map, so both have `channels` entries).

    Fields:
        num_tasks: length of the one-hot task input (= number of tasks in the registry).
        image_size: side of the square RGB input image [px].
        channels: number of feature maps of every conv layer.
        trunk_convs: conv layers in the image trunk (seed: 7), the first included.
        first_kernel, first_stride: kernel and stride of the first conv layer.
        first_pool: max-pool size/stride after the first conv layer (1 = none).
        trunk_kernel: kernel of the other trunk conv layers ('same' padding).
        trunk_pool: max-pool size/stride at the end of the trunk (1 = none).
        fuse_hidden: widths of the hidden FC layers that embed [action, gripper closed,
            height, one-hot task]; a last linear layer maps to `channels`.
        head_convs: conv layers after the fusion (seed: 9).
        head_kernel: kernel of the head conv layers ('same' padding).
        head_pool_after: a max-pool follows this many head conv layers (0 = never).
        head_pool: size/stride of that max-pool.
        fc_hidden: width of the hidden FC layer(s) of the output (2 FC layers in total;
            3 per task in the multi-headed variant).
        multi_head: one output head per task instead of one shared head.
        state_skip: also feed the fused [action, gripper, height, task] vector straight to the
            output FC layers (concatenated to the flattened conv features), so the action does
            not have to survive every head conv layer to reach the output.
        norm: normalization after each conv layer: "none" or "group" (GroupNorm, which does
            not depend on the batch, so CEM populations and training batches agree).
        height_scale_m: gripper heights [m] are divided by this before entering the net.
        object_detected_input: the gripper's object-detected flag is a state input (see the
            module docstring); False reproduces the original [action, gripper, height, task].
        step_horizon: H > 0 adds the state input "steps remaining" (H - t) / H for the
            observation at step index t (set H to the episodes' step limit); 0 = no such input.
        fuse_after_norm: with norm "group", add the fused state after the first head conv's
            GroupNorm instead of before that conv (see the module docstring).
        position_embedding: add a learned per-position map where the fused state is added, so
            the head can relate the action to image positions (see the module docstring).
        spatial_softmax: a keypoint head instead of the head convs (see the module
            docstring); `head_*` and `state_skip` are then unused.
        grasp_head: a second output, the logit of "the closed gripper holds an object after
            this action" (see the module docstring); not with `multi_head`.
    """

    num_tasks: int
    image_size: int = 64
    channels: int = 32
    trunk_convs: int = 7
    first_kernel: int = 5
    first_stride: int = 2
    first_pool: int = 2
    trunk_kernel: int = 5
    trunk_pool: int = 2
    fuse_hidden: tuple[int, ...] = (64,)
    head_convs: int = 9
    head_kernel: int = 3
    head_pool_after: int = 6
    head_pool: int = 2
    fc_hidden: int = 64
    multi_head: bool = False
    state_skip: bool = False
    norm: str = "none"
    height_scale_m: float = 0.25
    object_detected_input: bool = True
    step_horizon: int = 0
    fuse_after_norm: bool = False
    position_embedding: bool = False
    spatial_softmax: bool = False
    grasp_head: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fuse_hidden", tuple(int(w) for w in self.fuse_hidden))
        positive = (
            "num_tasks", "image_size", "channels", "trunk_convs", "first_kernel",
            "first_stride", "first_pool", "trunk_kernel", "trunk_pool", "head_convs",
            "head_kernel", "head_pool", "fc_hidden",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"QNetConfig.{name} must be a positive integer, got {value!r}")
        if not 0 <= self.head_pool_after <= self.head_convs:
            raise ValueError(
                f"QNetConfig.head_pool_after must be in [0, head_convs={self.head_convs}], "
                f"got {self.head_pool_after}"
            )
        if any(w < 1 for w in self.fuse_hidden):
            raise ValueError(f"QNetConfig.fuse_hidden widths must be >= 1: {self.fuse_hidden}")
        if self.norm not in NORMS:
            raise ValueError(f"QNetConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if not isinstance(self.step_horizon, int) or self.step_horizon < 0:
            raise ValueError(
                f"QNetConfig.step_horizon must be an integer >= 0, got {self.step_horizon!r}"
            )
        if self.grasp_head and self.multi_head:
            raise ValueError("QNetConfig.grasp_head needs the shared output (multi_head false)")
        if self.fuse_after_norm and self.norm != "group":
            raise ValueError("QNetConfig.fuse_after_norm needs norm 'group'")
        if not self.height_scale_m > 0:
            raise ValueError(f"QNetConfig.height_scale_m must be > 0, got {self.height_scale_m}")
        if self.head_output_size() < 1:
            raise ValueError(
                f"QNetConfig: image_size {self.image_size} is too small for the layers"
            )

    def feature_size(self) -> int:
        """Side of the trunk's output feature map."""
        pad = self.first_kernel // 2
        s = (self.image_size + 2 * pad - self.first_kernel) // self.first_stride + 1
        s //= self.first_pool
        return s // self.trunk_pool

    def head_output_size(self) -> int:
        """Side of the feature map that is flattened into the output FC layers."""
        s = self.feature_size()
        if self.spatial_softmax:
            return s
        return s // self.head_pool if self.head_pool_after > 0 else s

    @classmethod
    def tiny(cls, num_tasks: int, image_size: int = 16, **overrides: Any) -> QNetConfig:
        """Very small net for unit tests and toy tasks (same 7 + 9 conv structure)."""
        base = dict(
            image_size=image_size, channels=16, first_kernel=3, first_stride=1, first_pool=2,
            trunk_kernel=3, trunk_pool=2, fuse_hidden=(32,), head_pool_after=0, fc_hidden=32,
        )  # fmt: skip
        base.update(overrides)
        return cls(num_tasks=num_tasks, **base)

    @classmethod
    def compact(cls, num_tasks: int, image_size: int = 64, **overrides: Any) -> QNetConfig:
        """`tiny` for 64 px policy images: a stride-2 first conv (4x fewer trunk pixels),
        GroupNorm with the state fused after the first head norm, and the state skip; the
        network the gym probe and `make demo` train."""
        base = dict(first_stride=2, norm="group", state_skip=True, fuse_after_norm=True)
        base.update(overrides)
        return cls.tiny(num_tasks, image_size=image_size, **base)

    @classmethod
    def small(cls, num_tasks: int, **overrides: Any) -> QNetConfig:
        """64 px preset for CPU: the paper's layout at 1/7 of the resolution, 32 channels."""
        return cls(num_tasks=num_tasks, **overrides)

    @classmethod
    def paper(cls, num_tasks: int, **overrides: Any) -> QNetConfig:
        """472 px preset with the QT-Opt / MT-Opt layer sizes (64 channels, 6x6/2 first conv,
        3x3 max-pools in the trunk, FC 256 -> 64 embedding, 64-wide output FC)."""
        base = dict(
            image_size=472, channels=64, first_kernel=6, first_stride=2, first_pool=3,
            trunk_kernel=5, trunk_pool=3, fuse_hidden=(256,), head_kernel=3, head_pool_after=6,
            head_pool=2, fc_hidden=64,
        )  # fmt: skip
        base.update(overrides)
        return cls(num_tasks=num_tasks, **base)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fuse_hidden"] = list(self.fuse_hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"QNetConfig: unknown fields {sorted(unknown)}")
        # Written before these options existed: the network has the original layout (no
        # object-detected input, the state fused before the first head conv).
        data = {"object_detected_input": False, "fuse_after_norm": False, **data}
        return cls(**data)


class QFunction(Protocol):
    """What CEM and the Bellman updater need from a Q-function (QNet or a test stand-in)."""

    def trunk(self, images: torch.Tensor) -> torch.Tensor: ...

    def head_logits(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        gripper_closed: torch.Tensor,
        height: torch.Tensor,
        task: torch.Tensor,
        object_detected: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


def expand_features(features: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat each state's features n times: (B, ...) -> (B * n, ...), row b*n + i = state b."""
    b = features.shape[0]
    return (
        features.unsqueeze(1).expand(b, n, *features.shape[1:]).reshape(b * n, *features.shape[1:])
    )


def images_to_input(images: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 (or float in [0, 1]) -> (B, 3, H, W) float32 in [-0.5, 0.5]."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got {tuple(images.shape)}")
    if image_size is not None and (images.shape[1] != image_size or images.shape[2] != image_size):
        raise ValueError(
            f"images must be {image_size}x{image_size} for this network, got "
            f"{images.shape[1]}x{images.shape[2]}"
        )
    x = images.permute(0, 3, 1, 2)
    x = x.float() / 255.0 if images.dtype == torch.uint8 else x.float()
    return x - 0.5


class QNet(nn.Module):
    """The MT-Opt Q-network (see the module docstring). Outputs Q in [0, 1]."""

    def __init__(self, config: QNetConfig):
        super().__init__()
        self.config = config
        c = config.channels

        def conv_block(cin: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, c, kernel, stride, padding=kernel // 2)]
            if config.norm == "group":
                layers.append(nn.GroupNorm(min(8, c), c))
            layers.append(nn.ReLU(inplace=True))
            return layers

        trunk: list[nn.Module] = conv_block(3, config.first_kernel, config.first_stride)
        if config.first_pool > 1:
            trunk.append(nn.MaxPool2d(config.first_pool))
        for _ in range(config.trunk_convs - 1):
            trunk += conv_block(c, config.trunk_kernel)
        if config.trunk_pool > 1:
            trunk.append(nn.MaxPool2d(config.trunk_pool))
        self.trunk_layers = nn.Sequential(*trunk)

        fuse: list[nn.Module] = []
        width = ACTION_DIM + 2 + int(config.object_detected_input) + config.num_tasks
        width += int(config.step_horizon > 0)
        for hidden in config.fuse_hidden:
            fuse += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        fuse.append(nn.Linear(width, c))
        self.fuse_layers = nn.Sequential(*fuse)

        head: list[nn.Module] = []
        for i in range(0 if config.spatial_softmax else config.head_convs):
            head += conv_block(c, config.head_kernel)
            if i + 1 == config.head_pool_after and config.head_pool > 1:
                head.append(nn.MaxPool2d(config.head_pool))
        self.head_convs = nn.Sequential(*head)
        # Index of the head layer the fused state is added before: the first conv, or (with
        # fuse_after_norm) the ReLU after the first conv's GroupNorm.
        self._fuse_at = 2 if config.fuse_after_norm else 0
        self.position = None
        if config.position_embedding:
            s = config.feature_size()
            self.position = nn.Parameter(torch.zeros(1, c, s, s))

        flat = c * config.head_output_size() ** 2 + (c if config.state_skip else 0)
        if config.spatial_softmax:
            # Per channel: keypoint x, y and mean activation; then the fused state.
            flat = 3 * c + c
            s = config.feature_size()
            grid = torch.linspace(-1.0, 1.0, s)
            self.register_buffer("keypoint_x", grid.repeat(s), persistent=False)
            self.register_buffer("keypoint_y", grid.repeat_interleave(s), persistent=False)
        if config.multi_head:
            self.shared_fc = None
            n, h = config.num_tasks, config.fc_hidden
            self.mh_w1 = nn.Parameter(torch.empty(n, flat, h))
            self.mh_b1 = nn.Parameter(torch.zeros(n, h))
            self.mh_w2 = nn.Parameter(torch.empty(n, h, h))
            self.mh_b2 = nn.Parameter(torch.zeros(n, h))
            self.mh_w3 = nn.Parameter(torch.empty(n, h, 1))
            self.mh_b3 = nn.Parameter(torch.zeros(n, 1))
            for w, fan_in in ((self.mh_w1, flat), (self.mh_w2, h), (self.mh_w3, h)):
                nn.init.uniform_(w, -(fan_in**-0.5), fan_in**-0.5)
        elif config.spatial_softmax:
            h = config.fc_hidden
            self.shared_fc = nn.Sequential(
                nn.Linear(flat, h), nn.ReLU(inplace=True),
                nn.Linear(h, h), nn.ReLU(inplace=True),
                nn.Linear(h, 1),
            )  # fmt: skip
        else:
            self.shared_fc = nn.Sequential(
                nn.Linear(flat, config.fc_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.fc_hidden, 1),
            )
        self.grasp_fc = nn.Linear(config.fc_hidden, 1) if config.grasp_head else None

        self._init_weights()

    def _init_weights(self) -> None:
        # He init keeps the activation scale through the 16 ReLU conv layers (PyTorch's
        # default init shrinks it layer by layer, which stalls learning without normalization).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def num_tasks(self) -> int:
        return self.config.num_tasks

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 images -> (B, C, h, w) features: every layer before the action
        enters, i.e. the trunk and, with `fuse_after_norm`, the first head conv and its norm
        (they do not depend on the action, so CEM runs them once per state)."""
        x = self.trunk_layers(images_to_input(images, self.config.image_size))
        for layer in list(self.head_convs)[: self._fuse_at]:
            x = layer(x)
        return x

    def head_logits(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        gripper_closed: torch.Tensor,
        height: torch.Tensor,
        task: torch.Tensor,
        object_detected: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logit of Q for features (B, C, h, w), action (B, 6), gripper closed (B,),
        height [m] (B,), task index (B,), object detected (B,), step index in the episode
        (B,) -> (B,). Q = sigmoid(logit). `object_detected` None means "not reported" (all 0,
        as `Episode` stores it); nets without that input ignore it. `step` is required by nets
        with a step input (`step_horizon` > 0) and ignored by the others."""
        return self.head_outputs(
            features, action, gripper_closed, height, task, object_detected, step
        )[0]

    def head_outputs(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        gripper_closed: torch.Tensor,
        height: torch.Tensor,
        task: torch.Tensor,
        object_detected: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(Q logits (B,), grasp logits (B,) or None without `grasp_head`) in one pass; the
        inputs as `head_logits`."""
        b = features.shape[0]
        if object_detected is None:
            object_detected = torch.zeros(b, device=features.device)
        horizon = self.config.step_horizon
        if horizon > 0 and step is None:
            raise ValueError(
                f"this network takes the episode step index as an input (step_horizon "
                f"{horizon}); pass step"
            )
        checks = (
            ("gripper_closed", gripper_closed), ("height", height), ("task", task),
            ("object_detected", object_detected),
        )  # fmt: skip
        if horizon > 0:
            checks += (("step", step),)
        for name, t in checks:
            if t.shape != (b,):
                raise ValueError(f"{name} must have shape ({b},), got {tuple(t.shape)}")
        if action.shape != (b, ACTION_DIM):
            raise ValueError(
                f"action must have shape ({b}, {ACTION_DIM}), got {tuple(action.shape)}"
            )
        task = task.long()
        parts = [
            action.float(),
            gripper_closed.float().unsqueeze(1),
            (height.float() / self.config.height_scale_m).unsqueeze(1),
        ]
        if self.config.object_detected_input:
            parts.append(object_detected.float().unsqueeze(1))
        if horizon > 0:
            remaining = ((horizon - step.float()) / horizon).clamp(0.0, 1.0)
            parts.append(remaining.unsqueeze(1))
        parts.append(F.one_hot(task, self.config.num_tasks).float())
        state = torch.cat(parts, dim=1)
        fused = self.fuse_layers(state)
        if self.config.spatial_softmax:
            x = torch.cat([self._keypoints(features), fused], dim=1)
            return self._output(x, task)
        x = features + fused[:, :, None, None]  # `trunk` ran the head layers before this
        if self.position is not None:
            x = x + self.position
        for layer in list(self.head_convs)[self._fuse_at :]:
            x = layer(x)
        x = x.flatten(1)
        if self.config.state_skip:
            x = torch.cat([x, fused], dim=1)
        return self._output(x, task)

    def _keypoints(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 3C): each channel's expected position (x, y in [-1, 1]) under
        its softmax over the map, and its mean activation."""
        flat = features.flatten(2)
        weights = torch.softmax(flat, dim=2)
        x = (weights * self.keypoint_x).sum(2)
        y = (weights * self.keypoint_y).sum(2)
        return torch.cat([x, y, flat.mean(2)], dim=1)

    def _output(
        self, x: torch.Tensor, task: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output FC layers (shared, or the sample's task head) -> (Q logits (B,), grasp
        logits (B,) or None)."""
        if self.shared_fc is not None:
            hidden = self.shared_fc[:-1](x)
            grasp = None if self.grasp_fc is None else self.grasp_fc(hidden).squeeze(1)
            return self.shared_fc[-1](hidden).squeeze(1), grasp
        # Multi-headed: every head runs on every sample (cheap next to the convs, and no
        # per-sample weight copies), then each sample keeps the output of its task's head.
        h = F.relu(torch.einsum("bf,nfh->bnh", x, self.mh_w1) + self.mh_b1)
        h = F.relu(torch.einsum("bnh,nhk->bnk", h, self.mh_w2) + self.mh_b2)
        out = (torch.einsum("bnh,nho->bno", h, self.mh_w3) + self.mh_b3).squeeze(2)
        return out.gather(1, task.unsqueeze(1)).squeeze(1), None

    def head(
        self, features, action, gripper_closed, height, task, object_detected=None, step=None
    ):
        """Q in [0, 1] for precomputed features (see `head_logits`)."""
        return torch.sigmoid(
            self.head_logits(features, action, gripper_closed, height, task, object_detected, step)
        )

    def logits(
        self, images, action, gripper_closed, height, task, object_detected=None, step=None
    ):
        return self.head_logits(
            self.trunk(images), action, gripper_closed, height, task, object_detected, step
        )

    def forward(
        self, images, action, gripper_closed, height, task, object_detected=None, step=None
    ):
        """Q(s, a, T) in [0, 1] for a batch: images (B, H, W, 3) uint8, action (B, 6),
        gripper_closed (B,), height [m] (B,), task index (B,), object detected (B,), step
        index (B,, nets with a step input)."""
        return torch.sigmoid(
            self.logits(images, action, gripper_closed, height, task, object_detected, step)
        )
