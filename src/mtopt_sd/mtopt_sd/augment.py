"""Train-time image augmentation for the success detector (seed Sec. XI, Fig. 13).

The seed distorts SD training images by cropping, brightening, rotating and superimposing random
shadows. `augment_views` does all four on a whole batch of multi-camera examples at once, in
plain torch (no per-image Python loop): crop and rotation are one affine warp per image
(`affine_grid` + `grid_sample`), shadows are random convex polygons rasterised for the whole
batch with half-plane tests.

What is shared across the three views of one example, and why:
  * brightness and colour: the scene gain, the colour cast (a gain per RGB channel) and the
    saturation change are drawn once per example and applied to every view, because the
    lighting of a cell at one instant is one physical fact all cameras see; a small extra gain
    per view models differing camera exposure.
  * crop + rotation: drawn independently per view. They stand in for camera-pose variation
    between cells, and each camera is mounted (and drifts) on its own.
  * shadows: drawn independently per view. A shadow polygon is an image-space distortion; one
    polygon cannot be projected consistently into three cameras without scene geometry.
No flips: a mirrored image would turn a top-left placement into a top-right one.

All randomness comes from the `torch.Generator` passed in, so a seed reproduces a batch exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 weights for the grey image


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each distortion (set a field to its neutral value to disable it).

    Fields:
        crop_min_scale: side of the random crop window as a fraction of the image side, drawn
            uniformly in [crop_min_scale, 1]; the window is resized back to the full image
            (1.0 = no crop). The window always lies inside the image.
        max_rotation_deg: rotation drawn uniformly in [-max, +max] degrees per view (0 = none).
        view_max_rotation_deg: per-view override of max_rotation_deg (one value per view, in
            camera order; () = the same for all). A top-down view centred on a freely turning
            fixture (the plate) can turn all the way: its labels do not change.
        brightness: scene gain drawn uniformly in [1 - b, 1 + b] per example, same for all views.
        view_brightness: extra gain in [1 - v, 1 + v] per view (camera exposure differences).
        colour_gain: gain per RGB channel in [1 - c, 1 + c] per example, same for all views
            (colour of the light; not in the seed's list, which has brightness only).
        saturation: the image is blended with its grey version by a factor in [1 - s, 1 + s]
            per example, same for all views (1 = unchanged, < 1 paler, > 1 more saturated).
        flat_recolour: strength s of a random colour matrix (identity + uniform(-s, s) per
            entry) applied, per example and the same in all views, only where the image is
            locally flat (bins, table, floor, walls), so backgrounds change colour while small
            textured things (objects, fingers) keep theirs (0 = off; not in the seed's list).
        flat_kernel: side of the window [px] whose colour variance decides "flat".
        flat_variance: variance scale (summed over RGB, images in [0, 1]) of the flatness mask
            exp(-variance / flat_variance).
        shadow_probability: chance that a view gets one shadow polygon.
        shadow_darkness_min, shadow_darkness_max: the shadow multiplies the pixels it covers by
            (1 - darkness), darkness drawn uniformly in this range.
        shadow_vertices: vertices of each (convex) shadow polygon.
        shadow_min_radius, shadow_max_radius: polygon radii, as fractions of the image
            half-side (the polygon's vertices lie on a random ellipse with these radii).
    """

    crop_min_scale: float = 0.85
    max_rotation_deg: float = 8.0
    view_max_rotation_deg: tuple[float, ...] = ()
    brightness: float = 0.3
    view_brightness: float = 0.05
    colour_gain: float = 0.1
    saturation: float = 0.3
    flat_recolour: float = 0.0
    flat_kernel: int = 5
    flat_variance: float = 0.002
    shadow_probability: float = 0.5
    shadow_darkness_min: float = 0.2
    shadow_darkness_max: float = 0.6
    shadow_vertices: int = 5
    shadow_min_radius: float = 0.2
    shadow_max_radius: float = 0.8

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"AugmentConfig.{name} {what}, got {getattr(self, name)!r}")

        check("crop_min_scale", 0.0 < self.crop_min_scale <= 1.0, "must be in (0, 1]")
        check("max_rotation_deg", 0.0 <= self.max_rotation_deg <= 180.0, "must be in [0, 180]")
        object.__setattr__(
            self, "view_max_rotation_deg", tuple(float(a) for a in self.view_max_rotation_deg)
        )
        check(
            "view_max_rotation_deg",
            all(0.0 <= a <= 180.0 for a in self.view_max_rotation_deg),
            "must be in [0, 180]",
        )
        check("brightness", 0.0 <= self.brightness < 1.0, "must be in [0, 1)")
        check("view_brightness", 0.0 <= self.view_brightness < 1.0, "must be in [0, 1)")
        check("colour_gain", 0.0 <= self.colour_gain < 1.0, "must be in [0, 1)")
        check("saturation", 0.0 <= self.saturation < 1.0, "must be in [0, 1)")
        check("flat_recolour", 0.0 <= self.flat_recolour <= 1.0, "must be in [0, 1]")
        check("flat_kernel", isinstance(self.flat_kernel, int), "must be an int")
        check(
            "flat_kernel", self.flat_kernel >= 3 and self.flat_kernel % 2 == 1, "must be odd >= 3"
        )
        check("flat_variance", self.flat_variance > 0.0, "must be > 0")
        check("shadow_probability", 0.0 <= self.shadow_probability <= 1.0, "must be in [0, 1]")
        check("shadow_darkness_min", 0.0 <= self.shadow_darkness_min <= 1.0, "must be in [0, 1]")
        check(
            "shadow_darkness_max",
            self.shadow_darkness_min <= self.shadow_darkness_max <= 1.0,
            "must be in [shadow_darkness_min, 1]",
        )
        check("shadow_vertices", isinstance(self.shadow_vertices, int), "must be an int")
        check("shadow_vertices", self.shadow_vertices >= 3, "must be >= 3")
        check("shadow_min_radius", self.shadow_min_radius > 0.0, "must be > 0")
        check(
            "shadow_max_radius",
            self.shadow_max_radius >= self.shadow_min_radius,
            "must be >= shadow_min_radius",
        )

    @classmethod
    def none(cls) -> AugmentConfig:
        """A configuration that leaves images unchanged."""
        return cls(
            crop_min_scale=1.0,
            max_rotation_deg=0.0,
            brightness=0.0,
            view_brightness=0.0,
            colour_gain=0.0,
            saturation=0.0,
            flat_recolour=0.0,
            shadow_probability=0.0,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator | None):
    return low + (high - low) * torch.rand(shape, generator=gen)


def random_affine(
    n: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Affine matrices (n, 2, 3) for `affine_grid`: a random crop window rotated in place.

    In `affine_grid`'s normalised coordinates the output pixel p samples the input at
    A p + t; A = scale * R(angle) shrinks the sampled window (crop, then zoom back up) and
    rotates it, and t moves the window while keeping its centre within (1 - scale) of the
    image centre so the unrotated window stays inside the image.
    """
    scale = _uniform((n,), config.crop_min_scale, 1.0, generator)
    if config.view_max_rotation_deg:
        per_view = torch.tensor(config.view_max_rotation_deg, dtype=torch.float32)
        max_angle = torch.deg2rad(per_view).repeat(n // len(per_view))  # rows are (b, v)
    else:
        max_angle = torch.full((n,), math.radians(config.max_rotation_deg))
    angle = _uniform((n,), -1.0, 1.0, generator) * max_angle
    shift = _uniform((n, 2), -1.0, 1.0, generator) * (1.0 - scale)[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, shift[:, 0]], dim=1),
            torch.stack([sin, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    return theta


def shadow_masks(
    n: int,
    height: int,
    width: int,
    config: AugmentConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random convex polygons rasterised to masks (n, height, width) of 0/1 floats.

    Each polygon's vertices lie on a random ellipse at sorted random angles, which makes the
    polygon convex and counter-clockwise; a pixel is inside when it lies left of every edge.
    """
    k = config.shadow_vertices
    centre = _uniform((n, 1, 2), -1.0, 1.0, generator)
    radii = _uniform((n, 1, 2), config.shadow_min_radius, config.shadow_max_radius, generator)
    angles, _ = torch.sort(_uniform((n, k), 0.0, 2.0 * math.pi, generator), dim=1)
    vertices = centre + radii * torch.stack([torch.cos(angles), torch.sin(angles)], dim=2)
    edges = torch.roll(vertices, shifts=-1, dims=1) - vertices  # (n, k, 2)
    # Pixel centres in normalised coordinates (align_corners=False convention).
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    px = xs.view(1, 1, 1, width)
    py = ys.view(1, 1, height, 1)
    vx, vy = vertices[..., 0, None, None], vertices[..., 1, None, None]  # (n, k, 1, 1)
    ex, ey = edges[..., 0, None, None], edges[..., 1, None, None]
    cross = ex * (py - vy) - ey * (px - vx)  # (n, k, H, W); >= 0 means left of the edge
    return (cross >= 0).all(dim=1).to(torch.float32)


def flatness(x: torch.Tensor, kernel: int, variance: float) -> torch.Tensor:
    """(n, 1, H, W) in (0, 1]: exp(-local colour variance / variance); 1 where flat."""
    pad = kernel // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    mean = F.avg_pool2d(padded, kernel, stride=1)
    square = F.avg_pool2d(padded * padded, kernel, stride=1)
    local = (square - mean * mean).clamp_min(0.0).sum(dim=1, keepdim=True)
    return torch.exp(-local / variance)


def augment_views(
    images: torch.Tensor,
    config: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Augment a batch of multi-camera examples.

    Args:
        images: float tensor (B, V, C, H, W) with values in [0, 1] (V camera views).
        config: distortion strengths (default `AugmentConfig()`).
        generator: source of all randomness; the same seed gives the same output.

    Returns:
        A new float tensor of the same shape, values in [0, 1].
    """
    config = config or AugmentConfig()
    if images.ndim != 5:
        raise ValueError(f"images must be (B, V, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor in [0, 1], got {images.dtype}")
    b, v, c, h, w = images.shape
    n = b * v
    x = images.reshape(n, c, h, w)

    if config.view_max_rotation_deg and len(config.view_max_rotation_deg) != v:
        raise ValueError(
            f"AugmentConfig.view_max_rotation_deg has {len(config.view_max_rotation_deg)} "
            f"values for {v} views"
        )
    rotates = config.max_rotation_deg > 0.0 or any(config.view_max_rotation_deg)
    if config.crop_min_scale < 1.0 or rotates:
        theta = random_affine(n, config, generator).to(x.dtype)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        # Reflection fills the corners a rotation uncovers with plausible content, not black.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    gain = _uniform((b, 1), 1.0 - config.brightness, 1.0 + config.brightness, generator)
    gain = gain * _uniform(
        (b, v), 1.0 - config.view_brightness, 1.0 + config.view_brightness, generator
    )
    x = x * gain.reshape(n, 1, 1, 1).to(x.dtype)
    if config.colour_gain > 0.0:
        cast = _uniform((b, 1, c), 1.0 - config.colour_gain, 1.0 + config.colour_gain, generator)
        x = x * cast.expand(b, v, c).reshape(n, c, 1, 1).to(x.dtype)
    if config.saturation > 0.0 and c == 3:
        factor = _uniform((b, 1), 1.0 - config.saturation, 1.0 + config.saturation, generator)
        factor = factor.expand(b, v).reshape(n, 1, 1, 1).to(x.dtype)
        grey = (x * _LUMA.to(x.dtype).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        x = grey + factor * (x - grey)

    if config.flat_recolour > 0.0 and c == 3:
        s = config.flat_recolour
        matrix = torch.eye(3) + _uniform((b, 1, 3, 3), -s, s, generator)
        matrix = matrix.expand(b, v, 3, 3).reshape(n, 3, 3).to(x.dtype)
        recoloured = torch.einsum("nij,njhw->nihw", matrix, x)
        x = x + flatness(x, config.flat_kernel, config.flat_variance) * (recoloured - x)

    if config.shadow_probability > 0.0:
        masks = shadow_masks(n, h, w, config, generator)
        darkness = _uniform(
            (n,), config.shadow_darkness_min, config.shadow_darkness_max, generator
        )
        darkness = darkness * (torch.rand((n,), generator=generator) < config.shadow_probability)
        x = x * (1.0 - darkness.view(n, 1, 1, 1) * masks[:, None]).to(x.dtype)

    return x.clamp_(0.0, 1.0).reshape(b, v, c, h, w)
