"""Models compile, step cleanly from the home keyframe, and have the right limits."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from mtopt_sim import robot, scene
from mtopt_sim.cell import SimCell
from mtopt_sim.ik import top_down_rotation, yaw_of
from mtopt_sim.objects import CATEGORIES, object_catalog

# iiwa14 joint limits A1..A7 [rad] (KUKA datasheet: +-170, 120, 170, 120, 170, 120, 175 deg).
IIWA14_LIMITS_DEG = (170, 120, 170, 120, 170, 120, 175)


def _warnings(data: mujoco.MjData) -> dict[int, int]:
    return {i: int(w.number) for i, w in enumerate(data.warning) if w.number}


def _step_from_home(model: mujoco.MjModel, key: str, seconds: float) -> mujoco.MjData:
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key(key).id)
    # Position servos hold the keyframe posture.
    for a in range(model.nu):
        joint = model.actuator_trnid[a, 0]
        data.ctrl[a] = data.qpos[model.jnt_qposadr[joint]]
    mujoco.mj_forward(model, data)
    mujoco.mj_step(model, data, nstep=int(seconds / model.opt.timestep))
    return data


def test_robot_model_compiles_alone_and_holds_home():
    spec = robot.build_robot_spec()
    model = spec.compile()
    assert model.nq == 9 and model.nu == 9  # 7 arm joints + 2 fingers
    assert [model.joint(i).name for i in range(7)] == list(robot.URDF_JOINT_NAMES)
    data = _step_from_home(model, "home", 1.0)
    assert _warnings(data) == {}
    np.testing.assert_allclose(data.qpos[:7], robot.RobotConfig().home_qpos, atol=2e-3)
    # Joint limits: the iiwa14's, and the servos' control ranges match them.
    for i, limit in enumerate(IIWA14_LIMITS_DEG):
        lo, hi = model.jnt_range[i]
        assert lo == pytest.approx(-math.radians(limit), abs=1e-3)
        assert hi == pytest.approx(math.radians(limit), abs=1e-3)
        np.testing.assert_allclose(model.actuator_ctrlrange[i], model.jnt_range[i])
    # The MJCF export is a complete model on its own.
    again = mujoco.MjSpec.from_string(spec.to_xml()).compile()
    assert again.nq == model.nq and again.nmesh == model.nmesh


def test_home_posture_is_top_down_and_clear_of_the_tilting_bin():
    model = robot.build_robot_spec().compile()
    data = _step_from_home(model, "home", 0.0)
    tcp = data.site(robot.TCP_SITE)
    rot = tcp.xmat.reshape(3, 3)
    assert rot[2, 2] == pytest.approx(-1.0, abs=1e-3)  # tool axis straight down
    assert abs(yaw_of(rot)) < 1e-3
    np.testing.assert_allclose(tcp.xpos, [0.32, 0.0, 0.48], atol=0.005)
    assert top_down_rotation(0.0) == pytest.approx(rot, abs=2e-3)


@pytest.mark.parametrize("cell_id", [0, 1, 6])
def test_cell_compiles_and_steps_without_warnings(cell_id):
    model = scene.build_scene_spec(cell_id).compile()
    # the cell's three cameras and the gripper's wrist camera (on the attached robot)
    names = {model.camera(i).name for i in range(model.ncam)}
    assert names == {*scene.CAMERA_NAMES, scene.ROBOT_PREFIX + "wrist"}
    assert all(model.light_castshadow == 0)  # shadows off (render cost)
    data = _step_from_home(model, "robot/home", 1.0)
    assert _warnings(data) == {}
    # Hinge: motorized, range [0, 3.0] rad, servo range equal to it.
    hinge = model.joint(scene.HINGE_JOINT)
    assert hinge.range.tolist() == pytest.approx([0.0, 3.0])
    act = model.actuator(scene.HINGE_ACTUATOR)
    assert act.ctrlrange.tolist() == pytest.approx([0.0, 3.0])


def test_full_cell_with_objects_runs_clean_and_respects_limits():
    cell = SimCell(seed=0)
    names = cell.respawn(np.random.default_rng(0))
    categories = {cell.variants[i].category for i in cell.active_objects}
    assert categories == set(CATEGORIES)  # one of each category, plus extras
    assert cell.config.min_objects <= len(names) <= cell.config.max_objects
    # Drive the arm and the hinge far past their limits: the servos clamp the targets.
    cell.set_joint_trajectory([1.0], [np.full(7, 10.0)])
    cell.set_bin_motor(10.0, 3.0)
    cell.advance(2.5)
    q = cell.arm_qpos()
    assert np.all(q >= cell.arm_range[:, 0] - 0.02) and np.all(q <= cell.arm_range[:, 1] + 0.02)
    assert cell.hinge_angle() <= 3.0 + 0.02
    cell.set_bin_motor(0.0)
    cell.go_home()
    cell.advance(2.0)
    assert abs(cell.hinge_angle()) < 0.01
    assert _warnings(cell.data) == {}
    cell.close()


def test_object_catalog_has_variants_of_every_category():
    catalog = object_catalog()
    for category in CATEGORIES:
        variants = [v for v in catalog if v.category == category]
        assert len(variants) >= 3
        looks = {tuple(p.rgba for p in v.parts) for v in variants}
        assert len(looks) == len(variants)  # every variant is coloured differently
        sizes = {tuple((p.size, p.radius, p.fromto) for p in v.parts) for v in variants}
        assert len(sizes) == len(variants)  # ... and sized differently
        for v in variants:
            assert 0.03 <= v.mass <= 0.2
            assert 2 * v.grasp_half_width < robot.MAX_OPENING - 0.02  # graspable


def test_cell_looks_differ_by_cell_id_but_geometry_does_not():
    a, b = scene.CellLook.from_cell_id(0), scene.CellLook.from_cell_id(1)
    assert a == scene.CellLook.from_cell_id(0)  # deterministic
    assert a.light_dir != b.light_dir and a.table_rgba != b.table_rgba
    assert a.camera_pos_jitter["overhead"] != b.camera_pos_jitter["overhead"]
    jitter = max(max(map(abs, v)) for v in a.camera_pos_jitter.values())
    assert jitter <= 0.015  # a small camera-pose jitter
    ma, mb = scene.build_scene_spec(0).compile(), scene.build_scene_spec(1).compile()
    assert ma.nbody == mb.nbody and ma.ngeom == mb.ngeom
    np.testing.assert_array_equal(ma.geom_size, mb.geom_size)
    assert not np.array_equal(ma.cam_pos, mb.cam_pos)
    with pytest.raises(ValueError, match="cell_id"):
        scene.CellLook.from_cell_id(-1)


def test_printed_quarters_cover_their_sections_and_are_visual_only():
    cell = SimCell(seed=0)
    m = cell.model
    cell._randomize_plate(np.random.default_rng(3))  # some yaw: the print turns with the plate
    mujoco.mj_forward(m, cell.data)
    for section, rgba in scene.SECTION_RGBA.items():
        g = m.geom(f"plate_mat_{section}").id
        assert m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0
        np.testing.assert_allclose(m.geom_rgba[g], rgba, atol=1e-6)
        mesh = m.geom_dataid[g]
        start, count = m.mesh_vertadr[mesh], m.mesh_vertnum[mesh]
        local = m.mesh_vert[start : start + count].astype(float)
        pos, rot = cell.data.geom_xpos[g], cell.data.geom_xmat[g].reshape(3, 3)
        world = pos + local @ rot.T
        centroid = world.mean(axis=0)
        # Every vertex lies over the section the oracle calls by that name (vertices on the
        # dividers are nudged towards the centroid: the boundary belongs to either side).
        sections = {cell.plate_section_of(v + 1e-4 * (centroid - v)) for v in world}
        assert sections == {section}
    cell.close()


def test_vary_look_changes_lighting_and_colours_and_restores_exactly():
    cell = SimCell(seed=0)
    cell.respawn(np.random.default_rng(0))
    before = cell.render("overhead", 48)
    geometry = cell.model.geom_size.copy()
    cell.vary_look(np.random.default_rng(1))
    varied = cell.render("overhead", 48)
    assert np.abs(varied.astype(int) - before).mean() > 2.0
    np.testing.assert_array_equal(cell.model.geom_size, geometry)
    for section, rgba in scene.SECTION_RGBA.items():  # the print is the same everywhere
        mat = cell.model.geom(f"plate_mat_{section}").id
        np.testing.assert_allclose(cell.model.geom_rgba[mat], rgba)
    cell.vary_look(np.random.default_rng(1))
    np.testing.assert_array_equal(cell.render("overhead", 48), varied)  # seeded
    cell.restore_look()
    np.testing.assert_array_equal(cell.render("overhead", 48), before)
    cell.close()
