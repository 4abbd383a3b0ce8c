"""The success oracle on constructed states: every task's success and its near misses."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from mtopt_core.tasks import load_task_registry
from mtopt_sim import robot
from mtopt_sim.cell import SimCell
from mtopt_sim.ik import top_down_rotation
from mtopt_sim.objects import CATEGORIES
from mtopt_sim.oracle import OracleConfig, SuccessOracle

LIFT_TASKS = [f"lift-{c}" for c in CATEGORIES]
PLACE_SECTIONS = {
    "place-bottom": "bottom",
    "place-top-left": "top-left",
    "place-top-right": "top-right",
}


@pytest.fixture(scope="module")
def cell():
    c = SimCell(seed=0)
    c.respawn(np.random.default_rng(3))
    yield c
    c.close()


@pytest.fixture(scope="module")
def oracle():
    return SuccessOracle(load_task_registry())


def _variant_of(cell: SimCell, category: str) -> int:
    return next(i for i, v in enumerate(cell.variants) if v.category == category)


def _hold(cell: SimCell, index: int, height: float, close: bool = True, squeeze: bool = True):
    """Arm over the right bin with the TCP `height` above the floor and the object between the
    pads. squeeze: the fingers really close on it (gravity off for the object meanwhile);
    close: the final gripper command (open leaves the fingers touching but commanded open)."""
    cell.clear_objects()
    tcp = np.array([0.56, -0.15, cell.floor_z + height])
    ik = cell.ik.solve(cell.home_qpos, tcp, top_down_rotation(0.0))
    assert ik.position_error < 1e-3
    cell.set_arm_qpos(ik.qpos)
    cell.open_gripper()
    cell.set_finger_qpos(robot.MAX_OPENING)
    tcp = cell.data.site_xpos[cell.tcp_site].copy()
    cell.place_object(index, tcp)
    body = cell.object_body[index]
    if squeeze:
        cell.model.body_gravcomp[body] = 1.0
        cell.close_gripper()
        cell.advance(0.4)
        cell.model.body_gravcomp[body] = 0.0
        dof = cell.object_dof_adr[index]
        cell.data.qvel[dof : dof + 6] = 0.0
    if close:
        cell.close_gripper()
    else:
        cell.open_gripper()
    mujoco.mj_forward(cell.model, cell.data)


def _on_plate(cell: SimCell, index: int, section: str, lift: float = 0.0):
    """Object resting on a plate section (or `lift` metres above it); gripper open, home."""
    cell.clear_objects()
    cell.go_home(instant=True)
    cell.open_gripper()
    cell.set_finger_qpos(robot.MAX_OPENING)
    local = {"bottom": (-0.045, 0.0), "top-left": (0.045, 0.035), "top-right": (0.045, -0.035)}
    origin, rot = cell.plate_frame()
    top = origin[2] + cell.scene_config.plate_thickness / 2
    world = origin + rot @ np.array([*local[section], 0.0])
    rest = cell.variants[index].rest_height
    cell.place_object(index, [world[0], world[1], top + rest - 0.0005 + lift])
    assert cell.plate_section_of(world) == section


def _only(result, *tasks):
    true = {t for t, ok in result.success.items() if ok}
    assert true == set(tasks), f"expected exactly {sorted(tasks)}, got {sorted(true)}"


@pytest.mark.parametrize("category", CATEGORIES)
def test_lift_success_per_category(cell, oracle, category):
    index = _variant_of(cell, category)
    _hold(cell, index, height=0.18)
    result = oracle.evaluate(cell)
    assert result.held == (cell.variants[index].name,)
    _only(result, "lift-any", f"lift-{category}")


@pytest.mark.parametrize("category", CATEGORIES)
def test_lift_near_misses(cell, oracle, category):
    index = _variant_of(cell, category)
    lift_height = oracle.config.lift_height
    # Held, but the object centre stays just below the lift height.
    _hold(cell, index, height=0.05)
    z = cell.object_position(index)[2] - cell.floor_z
    assert z < lift_height
    assert oracle.evaluate(cell).held and not any(oracle.evaluate(cell).success.values())
    # High enough and between the fingers, but the gripper is commanded open.
    _hold(cell, index, height=0.18, close=False)
    _only(oracle.evaluate(cell))
    # High enough, gripper closed, but the fingers do not touch it (it is falling).
    _hold(cell, index, height=0.18, squeeze=False)
    cell.set_gripper(0.0)
    _only(oracle.evaluate(cell))


def test_lift_height_threshold_is_the_configured_one(cell):
    index = _variant_of(cell, "box")
    _hold(cell, index, height=0.18)
    z = cell.object_position(index)[2] - cell.floor_z
    registry = load_task_registry()
    assert (
        SuccessOracle(registry, OracleConfig(lift_height=z - 0.01))
        .evaluate(cell)
        .success["lift-box"]
    )
    assert (
        not SuccessOracle(registry, OracleConfig(lift_height=z + 0.01))
        .evaluate(cell)
        .success["lift-box"]
    )


@pytest.mark.parametrize("task", sorted(PLACE_SECTIONS))
def test_place_success_per_section(cell, oracle, task):
    index = _variant_of(cell, "box")
    _on_plate(cell, index, PLACE_SECTIONS[task])
    result = oracle.evaluate(cell)
    assert result.placed == {PLACE_SECTIONS[task]: (cell.variants[index].name,)}
    _only(result, "place-any", task)


@pytest.mark.parametrize("task", sorted(PLACE_SECTIONS))
def test_place_near_misses(cell, oracle, task):
    section = PLACE_SECTIONS[task]
    index = _variant_of(cell, "box")
    # Hovering 2 cm above the section: not resting on it.
    _on_plate(cell, index, section, lift=0.02)
    _only(oracle.evaluate(cell))
    # On the section, but the gripper is commanded closed (not released).
    _on_plate(cell, index, section)
    cell.set_gripper(0.0)
    _only(oracle.evaluate(cell))
    # On the section but still moving fast (bouncing).
    _on_plate(cell, index, section)
    dof = cell.object_dof_adr[index]
    cell.data.qvel[dof] = 0.5
    _only(oracle.evaluate(cell))
    # On the section, gripper open, but a finger still touches it.
    _on_plate(cell, index, section)
    pos = cell.object_position(index)
    half = cell.variants[index].grasp_half_width
    ik = cell.ik.solve(
        cell.home_qpos,
        np.array([pos[0], pos[1] - half - 0.05 + 0.001, pos[2]]),
        top_down_rotation(0.0),
    )
    cell.set_arm_qpos(ik.qpos)
    assert (
        "finger_left" in cell.contacts_by_object()[index]
        or "finger_right" in (cell.contacts_by_object()[index])
    )
    _only(oracle.evaluate(cell))


def test_place_miss_next_to_the_plate(cell, oracle):
    index = _variant_of(cell, "box")
    cell.clear_objects()
    cell.go_home(instant=True)
    cell.open_gripper()
    origin, _ = cell.plate_frame()
    radius = cell.scene_config.plate_radius
    # Beside the plate, on the left-bin floor (towards the bin's far wall).
    spot = origin + np.array([radius + 0.03, 0.0, 0.0])
    rest = cell.variants[index].rest_height
    cell.place_object(index, [spot[0], spot[1], cell.floor_z + rest - 0.0005])
    assert cell.plate_section_of(cell.object_position(index)) is None
    assert cell.object_region(index) == "left_bin"
    _only(oracle.evaluate(cell))


def test_oracle_agrees_with_the_label_sharing_rules(cell, oracle):
    registry = load_task_registry()
    _hold(cell, _variant_of(cell, "carrot"), height=0.18)
    labels = oracle.evaluate(cell).success
    assert registry.share_labels(labels) == labels  # consistent: no conflict raised
    _on_plate(cell, _variant_of(cell, "can"), "top-left")
    labels = oracle.evaluate(cell).success
    assert registry.share_labels(labels) == labels


def test_oracle_rejects_tasks_it_cannot_grade():
    from mtopt_core.tasks import parse_task_registry

    registry = parse_task_registry(
        {
            "skills": {"object_acquisition": "", "wiping": ""},
            "tasks": [{"name": "wipe", "skill": "wiping"}],
        }
    )
    with pytest.raises(ValueError, match="cannot grade skill 'wiping'"):
        SuccessOracle(registry)
    registry = parse_task_registry(
        {
            "skills": {"object_manipulation": ""},
            "tasks": [
                {"name": "place-middle", "skill": "object_manipulation", "section": "middle"}
            ],
        }
    )
    with pytest.raises(ValueError, match="unknown plate section"):
        SuccessOracle(registry)


def test_plate_sections_follow_the_plate_yaw(cell):
    origin, rot = cell.plate_frame()
    yaw = math.atan2(rot[1, 0], rot[0, 0])
    along = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    assert cell.plate_section_of(origin - 0.04 * along) == "bottom"
    assert cell.plate_section_of(origin + 0.04 * along + 0.03 * left) == "top-left"
    assert cell.plate_section_of(origin + 0.04 * along - 0.03 * left) == "top-right"
    assert cell.plate_section_of(origin + 0.2 * along) is None
