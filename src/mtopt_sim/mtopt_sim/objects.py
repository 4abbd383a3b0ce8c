"""The graspable objects: the seed's 7 toy-food categories, each in several size/colour variants.

Every variant is a small composition of primitives (box, capsule, cylinder), cheap to collide and
to render. All variants exist in the compiled model as free bodies; a scene spawns a random
subset into the right bin and parks the others out of sight (see `mtopt_sim.cell`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

#: The seed's object categories, in the order of the task registry's lift-X tasks.
CATEGORIES = ("banana", "bottle", "sausage", "milk", "box", "can", "carrot")

_BOX = mujoco.mjtGeom.mjGEOM_BOX
_CAPSULE = mujoco.mjtGeom.mjGEOM_CAPSULE
_CYLINDER = mujoco.mjtGeom.mjGEOM_CYLINDER


@dataclass(frozen=True)
class Part:
    """One primitive of an object, in the object's body frame.

    Boxes use `size` (half extents) and `pos`; capsules and cylinders use `radius` and
    `fromto` (axis end points), as in MJCF.
    """

    kind: str  # "box" | "capsule" | "cylinder"
    rgba: tuple[float, float, float, float]
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.0
    fromto: tuple[float, float, float, float, float, float] = (0, 0, 0, 0, 0, 0)

    def volume(self) -> float:
        if self.kind == "box":
            return 8.0 * self.size[0] * self.size[1] * self.size[2]
        length = float(np.linalg.norm(np.subtract(self.fromto[3:], self.fromto[:3])))
        cylinder = math.pi * self.radius**2 * length
        if self.kind == "capsule":
            return cylinder + 4.0 / 3.0 * math.pi * self.radius**3
        return cylinder


@dataclass(frozen=True)
class ObjectVariant:
    """One object: category, a unique name, its parts and its total mass."""

    name: str
    category: str
    parts: tuple[Part, ...]
    mass: float  # kg; hollow plastic toy food is light
    #: Half of the object's narrowest width across a top-down grasp [m] (tests use it to put
    #: the object between closed fingers).
    grasp_half_width: float
    #: Radius of a sphere around the body origin that holds the object [m] (spawn spacing).
    bounding_radius: float
    #: Height of the body origin above the support when the object rests in its spawn pose [m].
    rest_height: float


def _rgba(r: float, g: float, b: float) -> tuple[float, float, float, float]:
    return (r, g, b, 1.0)


def _banana(name: str, length: float, radius: float, color) -> ObjectVariant:
    # An arc of three capsules in the xy plane (lying flat), centred on the origin.
    span = math.radians(70)
    rc = length / span
    angles = np.linspace(-span / 2, span / 2, 4)
    pts = [
        (rc * math.sin(a), rc * (1 - math.cos(a)) - rc * (1 - math.cos(span / 2)) / 2, 0.0)
        for a in angles
    ]
    parts = tuple(
        Part(
            "capsule",
            color,
            radius=radius * (0.8 if i != 1 else 1.0),
            fromto=(*pts[i], *pts[i + 1]),
        )
        for i in range(3)
    )
    return ObjectVariant(name, "banana", parts, 0.09, radius, length / 2 + radius, radius)


def _bottle(name: str, radius: float, height: float, neck: float, color) -> ObjectVariant:
    # Lying along x: body cylinder, neck, and a cap.
    half = height / 2
    neck_r = 0.45 * radius
    parts = (
        Part("cylinder", color, radius=radius, fromto=(-half, 0, 0, half, 0, 0)),
        Part("cylinder", color, radius=neck_r, fromto=(half, 0, 0, half + neck, 0, 0)),
        Part(
            "cylinder",
            _rgba(0.9, 0.9, 0.9),
            radius=neck_r * 1.2,
            fromto=(half + neck, 0, 0, half + neck + 0.01, 0, 0),
        ),
    )
    return ObjectVariant(name, "bottle", parts, 0.10, radius, half + neck + 0.012, radius)


def _sausage(name: str, radius: float, half_length: float, color) -> ObjectVariant:
    parts = (
        Part("capsule", color, radius=radius, fromto=(-half_length, 0, 0, half_length, 0, 0)),
    )
    return ObjectVariant(name, "sausage", parts, 0.06, radius, half_length + radius, radius)


def _milk(name: str, half_side: float, half_height: float, top_color) -> ObjectVariant:
    # Standing carton: white box and a coloured gable ridge on top.
    parts = (
        Part("box", _rgba(0.95, 0.95, 0.93), size=(half_side, half_side, half_height)),
        Part("box", top_color, size=(half_side, 0.008, 0.012), pos=(0, 0, half_height + 0.012)),
    )
    radius = math.sqrt(2 * half_side**2 + (half_height + 0.024) ** 2)
    return ObjectVariant(name, "milk", parts, 0.10, half_side, radius, half_height)


def _box(name: str, half: tuple[float, float, float], color) -> ObjectVariant:
    parts = (Part("box", color, size=half),)
    return ObjectVariant(
        name, "box", parts, 0.07, min(half[0], half[1]), float(np.linalg.norm(half)), half[2]
    )


def _can(name: str, radius: float, half_height: float, color) -> ObjectVariant:
    # Standing can: coloured body and a silver lid.
    parts = (
        Part("cylinder", color, radius=radius, fromto=(0, 0, -half_height, 0, 0, half_height)),
        Part(
            "cylinder",
            _rgba(0.78, 0.78, 0.8),
            radius=radius * 0.92,
            fromto=(0, 0, half_height, 0, 0, half_height + 0.004),
        ),
    )
    return ObjectVariant(
        name, "can", parts, 0.09, radius, math.hypot(radius, half_height + 0.004), half_height
    )


def _carrot(name: str, length: float, r_thick: float, r_thin: float, color) -> ObjectVariant:
    # Lying along x: a thick and a thin capsule (tapering root) and green leaves at the top.
    half = length / 2
    parts = (
        Part("capsule", color, radius=r_thick, fromto=(-half + r_thick, 0, 0, 0.0, 0, 0)),
        Part("capsule", color, radius=r_thin, fromto=(0.0, 0, 0, half - r_thin, 0, 0)),
        Part(
            "capsule",
            _rgba(0.2, 0.6, 0.15),
            radius=0.006,
            fromto=(-half - 0.004, 0, 0, -half - 0.03, 0, 0.0),
        ),
    )
    return ObjectVariant(name, "carrot", parts, 0.07, r_thick, half + 0.03, r_thick)


def object_catalog() -> tuple[ObjectVariant, ...]:
    """All object variants, grouped by category in CATEGORIES order (3 variants each)."""
    return (
        _banana("banana_0", 0.16, 0.018, _rgba(0.95, 0.83, 0.18)),
        _banana("banana_1", 0.14, 0.016, _rgba(0.88, 0.90, 0.35)),
        _banana("banana_2", 0.17, 0.020, _rgba(0.85, 0.72, 0.12)),
        _bottle("bottle_0", 0.028, 0.10, 0.030, _rgba(0.15, 0.55, 0.30)),
        _bottle("bottle_1", 0.025, 0.09, 0.025, _rgba(0.30, 0.50, 0.88)),
        _bottle("bottle_2", 0.030, 0.11, 0.030, _rgba(0.50, 0.28, 0.12)),
        _sausage("sausage_0", 0.017, 0.045, _rgba(0.62, 0.26, 0.16)),
        _sausage("sausage_1", 0.020, 0.055, _rgba(0.72, 0.38, 0.22)),
        _sausage("sausage_2", 0.015, 0.040, _rgba(0.48, 0.18, 0.12)),
        _milk("milk_0", 0.030, 0.050, _rgba(0.20, 0.35, 0.85)),
        _milk("milk_1", 0.027, 0.045, _rgba(0.85, 0.15, 0.15)),
        _milk("milk_2", 0.032, 0.055, _rgba(0.15, 0.65, 0.25)),
        # Box colours stay clear of the bins' slate and the plate's magenta top-right quarter
        # (a purple and a pink box there were the success detector's commonest misses).
        _box("box_0", (0.030, 0.025, 0.020), _rgba(0.78, 0.62, 0.40)),
        _box("box_1", (0.025, 0.025, 0.025), _rgba(0.20, 0.70, 0.75)),
        _box("box_2", (0.035, 0.020, 0.018), _rgba(0.95, 0.60, 0.10)),
        _can("can_0", 0.033, 0.045, _rgba(0.80, 0.10, 0.10)),
        _can("can_1", 0.030, 0.040, _rgba(0.62, 0.62, 0.66)),
        _can("can_2", 0.028, 0.050, _rgba(0.20, 0.62, 0.25)),
        _carrot("carrot_0", 0.14, 0.020, 0.012, _rgba(0.95, 0.50, 0.10)),
        _carrot("carrot_1", 0.12, 0.018, 0.010, _rgba(0.90, 0.42, 0.05)),
        _carrot("carrot_2", 0.15, 0.022, 0.013, _rgba(1.00, 0.58, 0.18)),
    )


def part_spheres(part: Part, spacing: float = 0.01) -> np.ndarray:
    """Spheres (n, 4: x, y, z, radius) in the body frame that cover a part.

    A cheap stand-in for the part's shape in planning (see `mtopt_sim.grasp`)."""
    if part.kind in ("capsule", "cylinder"):
        a, b = np.array(part.fromto[:3]), np.array(part.fromto[3:])
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / min(spacing, part.radius))) + 1)
        centers = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
        return np.column_stack([centers, np.full(n, part.radius)])
    half = np.array(part.size)
    counts = np.maximum(1, np.ceil(2 * half / spacing)).astype(int)
    axes = [np.linspace(-h + h / c, h - h / c, c) for h, c in zip(half, counts, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3) + np.array(part.pos)
    radius = float(np.linalg.norm(half / counts))
    return np.column_stack([grid, np.full(len(grid), radius)])


def variant_spheres(variant: ObjectVariant) -> np.ndarray:
    """All covering spheres (n, 4) of a variant, body frame."""
    return np.vstack([part_spheres(p) for p in variant.parts])


def body_name(variant: ObjectVariant) -> str:
    """Name of the variant's free body in the compiled model."""
    return f"obj_{variant.name}"


def add_object(parent: mujoco.MjsBody, variant: ObjectVariant, pos, friction) -> mujoco.MjsBody:
    """Add `variant` as a free body under `parent` at `pos` (its parked pose)."""
    body = parent.add_body(name=body_name(variant), pos=list(pos))
    body.add_freejoint(name=f"{body_name(variant)}_free")
    volumes = [p.volume() for p in variant.parts]
    total = sum(volumes)
    for i, (part, vol) in enumerate(zip(variant.parts, volumes, strict=True)):
        kwargs = dict(
            name=f"{body_name(variant)}_g{i}",
            rgba=list(part.rgba),
            mass=variant.mass * vol / total,
            friction=list(friction),
        )
        if part.kind == "box":
            body.add_geom(type=_BOX, size=list(part.size), pos=list(part.pos), **kwargs)
        elif part.kind in ("capsule", "cylinder"):
            body.add_geom(
                type=_CAPSULE if part.kind == "capsule" else _CYLINDER,
                size=[part.radius, 0, 0],
                fromto=list(part.fromto),
                **kwargs,
            )
        else:  # pragma: no cover - the catalog only uses the kinds above
            raise ValueError(f"unknown part kind {part.kind!r} in {variant.name}")
    return body
