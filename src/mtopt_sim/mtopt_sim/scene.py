"""The cell around the robot: table, two bins joined by a motorized hinge, the divided plate,
the object set, lights and the three cameras; and its per-cell look.

Layout (robot base frame = world frame, metres; z = 0 is the table top):

* right bin (source of objects) centred at (`bin_center_x`, -`bin_offset_y`), fixed;
* left bin centred at (`bin_center_x`, +`bin_offset_y`), on a hinge along x at the top edge of
  its wall next to the right bin. Positive hinge angles tilt it up and over the right bin, so a
  tilt to `dump_angle` pours its contents (and anything on the plate) into the right bin;
* the divided plate is fixed in the left bin (it tilts with it). Its three sections, in the
  plate frame (x away from the robot, y to the robot's left): `bottom` = x < 0,
  `top-left` = x >= 0 and y >= 0, `top-right` = x >= 0 and y < 0. Dark dividers (a T) separate
  them, and the two top quarters are printed in fixed colours (`SECTION_RGBA`, the same in
  every cell), so that a section can be told from its neighbour at any plate yaw;
* cameras `overhead` (above the bins), `left_shoulder` and `right_shoulder` (behind and above
  the robot, looking over its shoulders at the bins).

`CellLook.from_cell_id` derives lighting, background, table/bin/plate colours and a small camera
pose jitter from a cell id, so that the simulated cells differ the way the seed's 7 robots did,
and a success detector can be evaluated on a cell it was not trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from mtopt_sim import objects as objects_mod
from mtopt_sim.robot import WRIST_CAMERA, RobotConfig, build_robot_spec

CAMERA_NAMES = ("overhead", "left_shoulder", "right_shoulder")
#: Every camera a policy may look through: the cell's and the gripper's wrist camera.
POLICY_CAMERA_NAMES = (*CAMERA_NAMES, WRIST_CAMERA)
ROBOT_PREFIX = "robot/"
HINGE_JOINT = "left_bin_hinge"
HINGE_ACTUATOR = "left_bin_motor"
PLATE_BODY = "plate"
LEFT_BIN_BODY = "left_bin"
RIGHT_BIN_BODY = "right_bin"
PLATE_SECTIONS = ("bottom", "top-left", "top-right")
#: Angular extent of each section about the plate's z axis (plate frame, radians).
SECTION_ARCS = {
    "bottom": (math.pi / 2, 3 * math.pi / 2),
    "top-left": (0.0, math.pi / 2),
    "top-right": (-math.pi / 2, 0.0),
}
#: Colours of the plate (base and rim); each cell has one of them.
PLATE_PALETTE = ((0.95, 0.95, 0.93), (0.70, 0.82, 0.95), (0.75, 0.92, 0.75))
#: The dividers are the plate's colour times this (dark on any plate).
DIVIDER_SHADE = 0.3
#: Printed colour of the top quarters (the bottom half shows the plate's colour): black and
#: magenta, colours no object has (an orange quarter hid the carrots lying on it).
SECTION_RGBA = {"top-left": (0.08, 0.08, 0.08, 1.0), "top-right": (0.80, 0.15, 0.70, 1.0)}


@dataclass(frozen=True)
class SceneConfig:
    """Geometry of the cell (everything but the robot). Lengths in metres, angles in radians."""

    bin_center_x: float = 0.56
    bin_offset_y: float = 0.155  # each bin's centre is this far left/right of y = 0
    #: Inner (x length, y width) of each bin. The source (right) bin is longer than the left
    #: one, so the tilted left bin's end walls come down inside it and cannot catch objects
    #: that stick out over the right bin's end walls.
    right_bin_inner: tuple[float, float] = (0.32, 0.28)
    left_bin_inner: tuple[float, float] = (0.26, 0.28)
    bin_depth: float = 0.10  # inner depth (floor top to rim)
    bin_wall: float = 0.01
    bin_floor: float = 0.01  # floor thickness; the bin floor top is at z = bin_floor
    plate_radius: float = 0.09
    plate_thickness: float = 0.008
    #: The rim is a low lip; dividers are painted ridges (visual only): tall rims and dividers
    #: make wedges that hold objects in the tilted bin.
    plate_rim_height: float = 0.006
    divider_height: float = 0.004
    hinge_range: tuple[float, float] = (0.0, 3.0)
    hinge_kp: float = 800.0  # hinge servo [Nm/rad]
    hinge_damping: float = 60.0
    hinge_max_torque: float = 150.0
    table_half: tuple[float, float] = (0.75, 0.75)
    table_center_x: float = 0.35
    timestep: float = 0.002
    #: Friction of the bins' and the plate rim's smooth plastic. It overrides the objects'
    #: (contact priority), so that nothing stays wedged in the tilted bin.
    fixture_friction: float = 0.25
    #: Object surface friction (plastic on plastic; the gripper pads have their own, higher).
    object_friction: tuple[float, float, float] = (0.6, 0.005, 0.0001)
    #: Where unused object variants are parked (x of the first; they line up along +x).
    park_origin: tuple[float, float, float] = (3.0, 3.0, 1.0)
    robot: RobotConfig = field(default_factory=RobotConfig)

    @property
    def floor_z(self) -> float:
        """Height of the bin floors' top surface."""
        return self.bin_floor

    @property
    def rim_z(self) -> float:
        return self.bin_floor + self.bin_depth

    def bin_half(self, which: str) -> np.ndarray:
        """Inner half extents (x, y) of the 'left' or 'right' bin."""
        inner = {"left": self.left_bin_inner, "right": self.right_bin_inner}[which]
        return np.array(inner, dtype=float) / 2

    def bin_center(self, which: str) -> np.ndarray:
        """(x, y) of a bin's centre at hinge angle 0; which is 'left' or 'right'."""
        sign = {"left": 1.0, "right": -1.0}[which]
        return np.array([self.bin_center_x, sign * self.bin_offset_y])

    @property
    def hinge_point(self) -> np.ndarray:
        """World position of the hinge axis (it runs along x)."""
        y = self.bin_offset_y - self.left_bin_inner[1] / 2 - self.bin_wall
        return np.array([self.bin_center_x, y, self.rim_z])


def draw_lighting(rng: np.random.Generator) -> tuple[tuple, tuple, tuple]:
    """Random key-light direction and colour and ambient level: (light_dir, diffuse, ambient)."""
    azimuth = rng.uniform(0, 2 * math.pi)
    elevation = rng.uniform(math.radians(45), math.radians(80))
    light_dir = (
        -math.cos(elevation) * math.cos(azimuth),
        -math.cos(elevation) * math.sin(azimuth),
        -math.sin(elevation),
    )
    warmth = rng.uniform(-0.12, 0.12)  # warm (+) or cool (-) light
    level = rng.uniform(0.55, 0.85)
    diffuse = (level * (1 + warmth), level, level * (1 - warmth))
    amb = rng.uniform(0.25, 0.45)
    return light_dir, diffuse, (amb, amb, amb)


def draw_table_rgb(rng: np.random.Generator) -> np.ndarray:
    """Random greyish table colour."""
    return np.clip(rng.uniform(0.35, 0.8) + rng.uniform(-0.08, 0.08, 3), 0, 1)


def draw_wall_rgb(rng: np.random.Generator) -> np.ndarray:
    """Random wall colour (all three walls share it)."""
    return rng.uniform(0.3, 0.9, 3)


def draw_plate_rgb(rng: np.random.Generator) -> tuple[float, float, float]:
    """One of the plate colours of PLATE_PALETTE."""
    return PLATE_PALETTE[int(rng.integers(len(PLATE_PALETTE)))]


@dataclass(frozen=True)
class CellLook:
    """Appearance of one cell: lighting, colours, background and camera pose jitter."""

    cell_id: int
    light_dir: tuple[float, float, float]
    light_diffuse: tuple[float, float, float]
    ambient: tuple[float, float, float]
    table_rgba: tuple[float, float, float, float]
    floor_rgb1: tuple[float, float, float]
    floor_rgb2: tuple[float, float, float]
    wall_rgba: tuple[float, float, float, float]
    bin_rgba: tuple[float, float, float, float]
    plate_rgba: tuple[float, float, float, float]
    camera_pos_jitter: dict[str, tuple[float, float, float]]
    camera_target_jitter: dict[str, tuple[float, float, float]]

    @classmethod
    def from_cell_id(cls, cell_id: int, camera_jitter_m: float = 0.015) -> CellLook:
        """Deterministic look of cell `cell_id` (any non-negative int)."""
        if cell_id < 0:
            raise ValueError(f"cell_id must be >= 0, got {cell_id}")
        rng = np.random.default_rng([0x5EED, int(cell_id)])

        def jitter3(scale: float) -> tuple[float, float, float]:
            return tuple(float(v) for v in rng.uniform(-scale, scale, 3))

        light_dir, light_diffuse, ambient = draw_lighting(rng)
        bin_palette = [
            (0.15, 0.25, 0.55),
            (0.55, 0.55, 0.58),
            (0.12, 0.12, 0.13),
            (0.20, 0.45, 0.30),
            (0.60, 0.20, 0.18),
            (0.75, 0.70, 0.55),
            (0.30, 0.30, 0.45),
        ]
        bin_rgb = np.array(bin_palette[int(cell_id) % len(bin_palette)])
        bin_rgb = np.clip(bin_rgb + rng.uniform(-0.05, 0.05, 3), 0, 1)
        table_rgb = draw_table_rgb(rng)
        floor1 = rng.uniform(0.1, 0.6, 3)
        floor2 = np.clip(floor1 + rng.uniform(-0.15, 0.15, 3), 0, 1)
        wall = draw_wall_rgb(rng)
        return cls(
            cell_id=int(cell_id),
            light_dir=light_dir,
            light_diffuse=tuple(float(v) for v in light_diffuse),
            ambient=ambient,
            table_rgba=(*(float(v) for v in table_rgb), 1.0),
            floor_rgb1=tuple(float(v) for v in floor1),
            floor_rgb2=tuple(float(v) for v in floor2),
            wall_rgba=(*(float(v) for v in wall), 1.0),
            bin_rgba=(*(float(v) for v in bin_rgb), 1.0),
            plate_rgba=(*draw_plate_rgb(rng), 1.0),
            camera_pos_jitter={n: jitter3(camera_jitter_m) for n in CAMERA_NAMES},
            camera_target_jitter={n: jitter3(camera_jitter_m) for n in CAMERA_NAMES},
        )


#: Nominal camera placement: (position, look-at point, vertical field of view [deg]).
CAMERA_POSES = {
    "overhead": ((0.92, 0.0, 0.95), (0.58, 0.0, 0.0), 50.0),
    "left_shoulder": ((-0.05, 0.60, 0.85), (0.56, 0.0, 0.02), 45.0),
    "right_shoulder": ((-0.05, -0.60, 0.85), (0.56, 0.0, 0.02), 45.0),
}


def _look_at_xyaxes(pos, target) -> list[float]:
    """MJCF camera xyaxes for a camera at `pos` looking at `target` with world z up."""
    forward = np.subtract(target, pos).astype(float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return [*right, *up]


def build_scene_spec(
    cell_id: int = 0,
    config: SceneConfig | None = None,
    variants: tuple[objects_mod.ObjectVariant, ...] | None = None,
) -> mujoco.MjSpec:
    """Build the full cell: scene + robot (attached) + all object variants (parked)."""
    config = config or SceneConfig()
    look = CellLook.from_cell_id(cell_id)
    variants = variants if variants is not None else objects_mod.object_catalog()

    spec = mujoco.MjSpec()
    spec.modelname = f"mtopt_cell_{cell_id}"
    spec.compiler.degree = False  # all angles here are radians
    spec.option.timestep = config.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 5.0
    # Island sleeping: objects at rest in the bins cost (almost) nothing until touched.
    spec.option.enableflags |= int(mujoco.mjtEnableBit.mjENBL_SLEEP)
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 640
    spec.visual.quality.shadowsize = 0
    # Coarse tessellation of capsules/cylinders: at 64-128 px it is invisible and it cuts the
    # render time about 4x on llvmpipe (primitives dominate the triangle count).
    spec.visual.quality.numslices = 12
    spec.visual.quality.numstacks = 6
    spec.visual.quality.numquads = 1
    spec.visual.headlight.ambient = list(look.ambient)
    spec.visual.headlight.diffuse = [0.15, 0.15, 0.15]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.stat.center = [0.5, 0.0, 0.2]
    spec.stat.extent = 1.2

    world = spec.worldbody
    _add_background(spec, look, config)
    world.add_light(
        name="key_light",
        pos=[0.5, 0.0, 2.0],
        dir=list(look.light_dir),
        diffuse=list(look.light_diffuse),
        specular=[0.1, 0.1, 0.1],
        castshadow=False,
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
    )
    _add_bins(spec, look, config)
    _add_cameras(spec, look)

    # Robot: its own spec, attached at the base frame origin.
    robot = build_robot_spec(config.robot)
    frame = world.add_frame(name="robot_mount", pos=[0, 0, 0])
    spec.attach(robot, prefix=ROBOT_PREFIX, frame=frame)
    # The base sits on the table; never simulate that contact.
    spec.add_exclude(bodyname1="table", bodyname2=f"{ROBOT_PREFIX}lbr_iiwa_link_0")

    for i, variant in enumerate(variants):
        px, py, pz = config.park_origin
        objects_mod.add_object(world, variant, (px + 0.4 * i, py, pz), config.object_friction)
    return spec


def _add_background(spec: mujoco.MjSpec, look: CellLook, config: SceneConfig) -> None:
    world = spec.worldbody
    tex = spec.add_texture(
        name="floor_tex",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=list(look.floor_rgb1),
        rgb2=list(look.floor_rgb2),
        width=64,
        height=64,
    )
    mat = spec.add_material(name="floor_mat", texrepeat=[6, 6], reflectance=0.0)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[4, 4, 0.1],
        pos=[0, 0, -0.75],
        material="floor_mat",
        contype=0,
        conaffinity=0,
    )
    for name, pos, size in (
        ("wall_back", (2.2, 0, 0.5), (0.02, 3.0, 1.5)),
        ("wall_left", (0.5, 2.2, 0.5), (3.0, 0.02, 1.5)),
        ("wall_right", (0.5, -2.2, 0.5), (3.0, 0.02, 1.5)),
    ):
        world.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=list(pos),
            size=list(size),
            rgba=list(look.wall_rgba),
            contype=0,
            conaffinity=0,
        )
    table = world.add_body(name="table", pos=[config.table_center_x, 0, 0])
    hx, hy = config.table_half
    table.add_geom(
        name="table_top",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[hx, hy, 0.025],
        pos=[0, 0, -0.025],
        rgba=list(look.table_rgba),
    )


def _bin_geoms(
    body: mujoco.MjsBody, prefix: str, center, half_in, config: SceneConfig, rgba
) -> None:
    """Floor and four walls of a bin, with its inner floor centre at `center` (body frame)
    and inner half extents `half_in` (x, y)."""
    cx, cy, cz = center
    hx, hy = half_in
    w = config.bin_wall
    wall_h = (config.bin_depth + config.bin_floor) / 2
    box = mujoco.mjtGeom.mjGEOM_BOX
    slippery = dict(friction=[config.fixture_friction, 0.005, 0.0001], priority=2)
    body.add_geom(
        name=f"{prefix}_floor",
        type=box,
        size=[hx + w, hy + w, config.bin_floor / 2],
        pos=[cx, cy, cz - config.bin_floor / 2],
        rgba=list(rgba),
        **slippery,
    )
    zc = cz - config.bin_floor + wall_h
    for name, pos, size in (
        ("wall_far", (cx + hx + w / 2, cy, zc), (w / 2, hy + w, wall_h)),
        ("wall_near", (cx - hx - w / 2, cy, zc), (w / 2, hy + w, wall_h)),
        ("wall_left", (cx, cy + hy + w / 2, zc), (hx, w / 2, wall_h)),
        ("wall_right", (cx, cy - hy - w / 2, zc), (hx, w / 2, wall_h)),
    ):
        body.add_geom(
            name=f"{prefix}_{name}",
            type=box,
            pos=list(pos),
            size=list(size),
            rgba=list(rgba),
            **slippery,
        )


def _add_bins(spec: mujoco.MjSpec, look: CellLook, config: SceneConfig) -> None:
    world = spec.worldbody
    rx, ry = config.bin_center("right")
    right = world.add_body(name=RIGHT_BIN_BODY, pos=[rx, ry, config.floor_z])
    _bin_geoms(right, "right_bin", (0, 0, 0), config.bin_half("right"), config, look.bin_rgba)
    # Chute over the two walls at the hinge: a ramp from just above the left bin's rim down
    # into the right bin, so that nothing poured out of the tilted left bin comes to rest on
    # the wall tops (or falls back to the left).
    top = np.array([config.hinge_point[1] + 0.007, config.rim_z + 0.008])
    bottom = np.array([config.hinge_point[1] - 0.040, config.rim_z - 0.025])
    mid = (top + bottom) / 2
    slope = top - bottom
    right.add_geom(
        name="right_bin_chute",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[
            config.bin_half("right")[0] + config.bin_wall,
            float(np.linalg.norm(slope)) / 2,
            0.003,
        ],
        pos=[0, float(mid[0] - ry), float(mid[1] - config.floor_z)],
        euler=[float(np.arctan2(slope[1], slope[0])), 0, 0],
        rgba=list(look.bin_rgba),
        friction=[config.fixture_friction, 0.005, 0.0001],
        priority=2,
    )

    # Left bin: body frame on the hinge axis; geometry offset so that at angle 0 it sits on
    # the table next to the right bin.
    hinge = config.hinge_point
    left = world.add_body(name=LEFT_BIN_BODY, pos=list(hinge), gravcomp=1.0)
    left.add_joint(
        name=HINGE_JOINT,
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[1, 0, 0],
        range=list(config.hinge_range),
        armature=0.2,
    ).damping = [config.hinge_damping, 0, 0]
    lx, ly = config.bin_center("left")
    center_local = (lx - hinge[0], ly - hinge[1], config.floor_z - hinge[2])
    _bin_geoms(left, "left_bin", center_local, config.bin_half("left"), config, look.bin_rgba)
    # Mass of the bin itself (geoms default to density 1000 -> far too heavy for thin walls).
    for geom in left.geoms:
        geom.density = 300.0
    act = spec.add_actuator(name=HINGE_ACTUATOR, target=HINGE_JOINT)
    act.trntype = mujoco.mjtTrn.mjTRN_JOINT
    act.set_to_position(kp=config.hinge_kp)
    act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
    act.ctrlrange = list(config.hinge_range)
    act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    act.forcerange = [-config.hinge_max_torque, config.hinge_max_torque]
    spec.add_exclude(bodyname1=LEFT_BIN_BODY, bodyname2=RIGHT_BIN_BODY)
    spec.add_exclude(bodyname1=LEFT_BIN_BODY, bodyname2="table")

    # The plate: a child of the left bin (it tilts with it), resting on the bin floor.
    plate = left.add_body(
        name=PLATE_BODY,
        pos=[center_local[0], center_local[1], center_local[2] + config.plate_thickness / 2],
    )
    rgba = list(look.plate_rgba)
    r = config.plate_radius
    plate.add_geom(
        name="plate_base",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[r, config.plate_thickness / 2, 0],
        rgba=rgba,
        density=300.0,
    )
    rim_h = config.plate_rim_height / 2
    rim_z = config.plate_thickness / 2 + rim_h
    n_rim = 14
    seg_half = r * math.sin(math.pi / n_rim) * 1.05
    for k in range(n_rim):
        a = 2 * math.pi * k / n_rim
        plate.add_geom(
            name=f"plate_rim_{k}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.004, seg_half, rim_h],
            pos=[r * math.cos(a), r * math.sin(a), rim_z],
            euler=[0, 0, a],
            rgba=rgba,
            density=300.0,
            friction=[config.fixture_friction, 0.005, 0.0001],
            priority=2,
        )
    # Printed quarters: the T of the dividers is mirror-symmetric, so on a plate that turns
    # freely top-left and top-right differ only by handedness relative to thin lines (the
    # success detector failed on exactly that). A fixed colour per quarter, the same in every
    # cell (one plate design for the fleet), makes the section visible around the object.
    mat_r = r - 0.005
    mat_half = 0.0003
    for section, (a0, a1) in SECTION_ARCS.items():
        if section not in SECTION_RGBA:
            continue  # the bottom half keeps the plate's own colour
        mesh_name = f"plate_mat_{section}"
        _add_sector_mesh(spec, mesh_name, mat_r, a0, a1, mat_half)
        plate.add_geom(
            name=mesh_name,
            type=mujoco.mjtGeom.mjGEOM_MESH,
            meshname=mesh_name,
            pos=[0, 0, config.plate_thickness / 2 + mat_half / 2],
            rgba=list(SECTION_RGBA[section]),
            contype=0,
            conaffinity=0,
            mass=0.0,
        )
    div_h = config.divider_height / 2
    div_z = config.plate_thickness / 2 + div_h
    # Dark dividers mark the section boundaries (the bottom half has no print of its own), so
    # they must be visible at camera resolution.
    divider_rgba = [DIVIDER_SHADE * c for c in rgba[:3]] + [1.0]
    plate.add_geom(
        name="plate_divider_across",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.005, r - 0.006, div_h],
        pos=[0, 0, div_z],
        rgba=divider_rgba,
        contype=0,
        conaffinity=0,
        mass=0.0,
    )
    plate.add_geom(
        name="plate_divider_top",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[(r - 0.011) / 2, 0.005, div_h],
        pos=[(r - 0.001) / 2, 0, div_z],
        rgba=divider_rgba,
        contype=0,
        conaffinity=0,
        mass=0.0,
    )


def _add_sector_mesh(
    spec: mujoco.MjSpec, name: str, radius: float, a0: float, a1: float, half_height: float
) -> None:
    """A flat circular-sector prism (angles a0..a1 about z, centre at the origin)."""
    n = max(2, int(math.ceil((a1 - a0) / math.radians(7.5))))
    verts = [[0.0, 0.0, half_height], [0.0, 0.0, -half_height]]
    for k in range(n + 1):
        a = a0 + (a1 - a0) * k / n
        x, y = radius * math.cos(a), radius * math.sin(a)
        verts += [[x, y, half_height], [x, y, -half_height]]
    faces = []
    for k in range(n):
        top0, bot0, top1, bot1 = 2 + 2 * k, 3 + 2 * k, 4 + 2 * k, 5 + 2 * k
        faces += [[0, top0, top1], [1, bot1, bot0], [top0, bot0, bot1], [top0, bot1, top1]]
    end = 2 + 2 * n
    faces += [[0, 1, 3], [0, 3, 2], [0, end, end + 1], [0, end + 1, 1]]
    spec.add_mesh(
        name=name,
        uservert=[v for vert in verts for v in vert],
        userface=[i for face in faces for i in face],
    )


def _add_cameras(spec: mujoco.MjSpec, look: CellLook) -> None:
    for name in CAMERA_NAMES:
        pos, target, fovy = CAMERA_POSES[name]
        pos = np.add(pos, look.camera_pos_jitter[name])
        target = np.add(target, look.camera_target_jitter[name])
        cam = spec.worldbody.add_camera(name=name, pos=list(pos), fovy=fovy)
        cam.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        cam.alt.xyaxes = _look_at_xyaxes(pos, target)


def main() -> None:  # pragma: no cover - developer aid
    """Print the MJCF of a cell (`python -m mtopt_sim.scene [cell_id]`)."""
    import sys

    print(build_scene_spec(int(sys.argv[1]) if len(sys.argv) > 1 else 0).to_xml())


if __name__ == "__main__":  # pragma: no cover
    main()
