"""`mtopt-sd-examples`: record success-detector example videos in the simulated cells.

    mtopt-sd-examples --out DIR --cells 0-6 --clips N [--frames 5] [--size 128]

Like a user recording examples for each task (seed Sec. XI), for every task of the registry,
success and failure, in every cell (each with its own lighting, colours and camera pose), it
writes ``DIR/<task>/<success|failure>/cell<c>/clip<k>/<camera>.mp4`` (5 fps, three cameras).

A clip is made with the sim cell's gymnasium env and its scripted pick / place policies: a
fresh scene, a scenario planned to show the wanted outcome (e.g. for a lift-carrot failure:
lift another object, miss, or do nothing; for a place-top-left failure: place on another
section, next to the plate, keep holding, or place nothing), then `--frames` frames at 5 Hz
with the arm at the cell's grading pose (`RobotConfig.present_qpos`, where the collector parks
the arm before the SD grades an episode; reached straight up out of the bins, then by a joint
move): the first frame at the pose, later ones a few centimetres and degrees around it, so the
SD does not depend on an exact pose. The label is the privileged oracle at the clip's final
frame; frames before that whose oracle outcome differs are dropped, and a clip whose final
outcome is not the planned one is re-tried in a new scene (never relabelled by plan).

Scenarios come from task attributes (`object: X` for lift tasks, `section: S` for place
tasks), so tasks added to config/tasks.yaml get examples without code changes. A manifest
(`DIR/manifest.json`) records the settings and per-cell counts; existing clips are kept, so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_sd.example_clips import CLIP_LAYOUT, Clip, clip_path, write_clip
from mtopt_sd.sd_data import VIDEO_RATE_HZ
from mtopt_sim.cell import CellConfig
from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.grasp import GraspPlanner
from mtopt_sim.scripted import ScriptedPick, ScriptedPlace, pick_config, place_config

ACQUISITION = "object_acquisition"
MANIPULATION = "object_manipulation"


@dataclass(frozen=True)
class GeneratorConfig:
    """How clips are recorded.

    Fields:
        frames: frames per clip (5 Hz, so 5 frames = 1 s of video).
        size: side of the rendered square camera images [px].
        min_frames: a clip keeps at least this many frames showing its final outcome, else it
            is re-recorded.
        max_attempts: scenes tried per clip to show the planned outcome.
        wiggle_m: largest TCP offset [m] per axis from the grading pose in later frames.
        wiggle_yaw: largest yaw offset [rad] from the grading pose in later frames.
        roam_height: TCP height above the bin floor for moves between the bins [m].
        vary_look: draw new lighting and background for every clip around the cell's own
            look (`SimCell.vary_look`), as a user recording examples varies them.
        section_margin_m: a place aims at least this far [m] from the plate's dividers, as a
            user places an example object clearly inside a section, not on a divider.
        seed: base seed; every clip derives its own from (seed, cell, task, outcome, clip).
    """

    frames: int = 5
    size: int = 128
    min_frames: int = 3
    max_attempts: int = 6
    wiggle_m: float = 0.03
    wiggle_yaw: float = 0.3
    roam_height: float = 0.22
    vary_look: bool = True
    section_margin_m: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not 1 <= self.min_frames <= self.frames:
            raise ValueError(f"min_frames must be in [1, frames={self.frames}]")
        if not 16 <= self.size <= 640:
            raise ValueError(f"size must be in 16..640, got {self.size}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


class ClipRecorder:
    """Runs scenarios in one simulated cell and records clips (no files; see `write_clip`)."""

    def __init__(self, cell_id: int, registry: TaskRegistry, config: GeneratorConfig):
        self.registry, self.config = registry, config
        self.env = MTOptCell(EnvConfig(cell=CellConfig(cell_id=cell_id)), registry=registry)
        self.cell = self.env.cell
        spec = self.env.config.action_spec
        self.rng = np.random.default_rng(0)
        # Noise-free scripted policies: the scenario, not chance, decides what a clip shows.
        self.picker = ScriptedPick(pick_config(noisy=False), spec, self.rng)
        self.placer = ScriptedPlace(place_config(noisy=False), spec, self.rng)
        self.planner = GraspPlanner(self.cell)
        self.categories = sorted({v.category for v in self.cell.variants})

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ episodes
    def _run(self, policy, options: dict[str, Any], task: str) -> None:
        obs, _ = self.env.reset(options={**options, "task": task})
        while True:
            obs, _, terminated, truncated, _ = self.env.step(policy.act(obs))
            if terminated or truncated:
                return

    def _objects_in_right_bin(self, category: str | None = None) -> list[int]:
        cell = self.cell
        return [
            i
            for i in cell.active_objects
            if cell.object_region(i) == "right_bin"
            and (category is None or cell.variants[i].category == category)
        ]

    def pick(self, category: str | None, exclude: str | None = None, miss: bool = False):
        """Scripted pick aimed at an object of `category` (any if None, not of `exclude`),
        or with `miss`, at the emptiest spot of the bin. The grasp (position, yaw) comes from
        the sim's grasp planner. Raises _ScenarioFailed when no such object is in the bin."""
        cell = self.cell
        options = self.picker.start_options(self.env)  # also starts the policy's episode
        if miss:
            centre = cell.scene_config.bin_center("right")[:2]
            half = cell.scene_config.bin_half("right") - 0.04
            candidates = centre + self.rng.uniform(-half, half, (32, 2))
            others = [cell.object_position(i)[:2] for i in self._objects_in_right_bin()]
            if others:
                offsets = candidates[:, None] - np.array(others)[None]
                gap = np.min(np.linalg.norm(offsets, axis=2), axis=1)
                xy = candidates[int(np.argmax(gap))]
            else:
                xy = candidates[0]
        else:
            grasps = [
                g
                for g in self.planner.candidates()
                if (category is None or cell.variants[g.object_index].category == category)
                and (exclude is None or cell.variants[g.object_index].category != exclude)
            ]
            if not grasps:
                raise _ScenarioFailed(f"no {category or 'object'} in the bin")
            # Like the sim's own choice: a random feasible grasp, else the best infeasible one
            # (crowded bins); the oracle decides what the clip shows.
            feasible = [g for g in grasps if g.clearance >= 0]
            if feasible:
                grasp = feasible[int(self.rng.integers(len(feasible)))]
            else:
                grasp = max(grasps, key=lambda g: g.clearance)
            xy = grasp.xy
            options["start_yaw"] = float(grasp.yaw)
        options["start"] = [float(xy[0]), float(xy[1]), float(options["start"][2])]
        self._run(self.picker, options, None)

    def acquire(self, tries: int = 3) -> bool:
        """Pick until an object is held."""
        for _ in range(tries):
            try:
                self.pick(None)
            except _ScenarioFailed:
                return False
            if self.cell.held_objects():
                return True
            self.cell.actuate_gripper(close=False)
        return False

    def place_at(self, xy: np.ndarray) -> None:
        """Scripted place episode starting above `xy` (world)."""
        options = self.placer.start_options(self.env)
        options["start"] = [float(xy[0]), float(xy[1]), float(options["start"][2])]
        self._run(self.placer, options, None)

    def plate_point(self, section: str | None) -> np.ndarray:
        """A random world xy over plate section `section` (None: over no section, in the
        left bin away from the plate)."""
        cell = self.cell
        origin, rotation = cell.plate_frame()
        radius = cell.scene_config.plate_radius
        for _ in range(1000):
            if section is None:
                half = cell.scene_config.bin_half("left") - 0.035
                xy = cell.scene_config.bin_center("left")[:2] + self.rng.uniform(-half, half, 2)
                far = np.linalg.norm(xy - origin[:2]) > radius + 0.035
                if far and cell.plate_section_of(np.array([*xy, origin[2]])) is None:
                    return xy
            else:
                r = radius * math.sqrt(self.rng.uniform(0.08, 0.45))
                a = self.rng.uniform(0, 2 * math.pi)
                local = np.array([r * math.cos(a), r * math.sin(a), 0.0])
                world = origin + rotation @ local
                # Distance to the dividers: the one across (x = 0) and the stem (y = 0, x > 0).
                clearance = min(abs(local[0]), abs(local[1]) if local[0] > 0 else math.inf)
                margin = self.config.section_margin_m
                if cell.plate_section_of(world) == section and clearance >= margin:
                    return world[:2]
        # Rare (the bin corners are the only room beside the plate): film another scene.
        raise _ScenarioFailed(f"no point found for plate section {section!r}")

    # ------------------------------------------------------------------ scenarios
    def scenarios(self, task: str, success: bool) -> list[tuple[str, float]]:
        """(scenario, weight) choices that should show `task`'s outcome `success`."""
        t = self.registry[task]
        if t.skill == ACQUISITION:
            if success:
                return [("lift_target", 1.0)]
            if "object" in t.attributes:
                return [("lift_other", 0.5), ("lift_miss", 0.3), ("idle", 0.2)]
            return [("lift_miss", 0.6), ("idle", 0.4)]
        if t.skill == MANIPULATION:
            if success:
                return [("place_target", 1.0)]
            if "section" in t.attributes:
                return [
                    ("place_other", 0.45), ("place_off_plate", 0.2), ("place_hold", 0.15),
                    ("idle", 0.2),
                ]  # fmt: skip
            return [("place_off_plate", 0.4), ("place_hold", 0.3), ("idle", 0.3)]
        raise ValueError(f"task {task}: no example scenarios for skill {t.skill!r}")

    def run_scenario(self, scenario: str, task: str) -> None:
        """Set the scene for `scenario` (raises _ScenarioFailed when the scene cannot)."""
        attrs = self.registry[task].attributes
        cell = self.cell
        if scenario == "lift_target":
            self.pick(attrs.get("object"))
            return
        if scenario == "lift_other":
            self.pick(None, exclude=attrs["object"])
            return
        if scenario == "lift_miss":
            self.pick(None, miss=True)
            return
        if scenario == "idle":
            return
        if scenario in ("place_target", "place_other", "place_off_plate", "place_hold"):
            if not self.acquire():
                raise _ScenarioFailed("could not acquire an object to place")
            section = attrs.get("section")
            if scenario == "place_target":
                section = section or str(self.rng.choice(["bottom", "top-left", "top-right"]))
            elif scenario == "place_other":
                section = str(self.rng.choice([s for s in ("bottom", "top-left", "top-right")
                                               if s != section]))  # fmt: skip
            elif scenario == "place_off_plate":
                section = None
            if scenario == "place_hold":
                xy = self.plate_point(str(self.rng.choice(["bottom", "top-left", "top-right"])))
                pos, yaw = cell.tcp_pose()
                cell.move_tcp(np.array([pos[0], pos[1], cell.floor_z + self.config.roam_height]),
                              yaw)  # fmt: skip
                cell.move_tcp(np.array([xy[0], xy[1], cell.floor_z + 0.16]), yaw)
                return
            self.place_at(self.plate_point(section))
            return
        raise ValueError(f"unknown scenario {scenario!r}")

    def _present(self, wiggle: bool) -> None:
        """Arm to the grading pose (straight up out of the bins first), or with `wiggle` to a
        random pose a few centimetres and degrees around it."""
        cfg, cell = self.config, self.cell
        if not wiggle:
            pos, yaw = cell.tcp_pose()
            rise = max(pos[2], cell.floor_z + cfg.roam_height)
            cell.move_tcp(np.array([pos[0], pos[1], rise]), yaw)
            cell.go_present()
            self._present_tcp = cell.tcp_pose()
            return
        position, yaw = self._present_tcp
        target = position + self.rng.uniform(-cfg.wiggle_m, cfg.wiggle_m, 3)
        yaw = yaw + self.rng.uniform(-cfg.wiggle_yaw, cfg.wiggle_yaw)
        cell.move_joints(cell.solve_ik(target, yaw).qpos)

    def record(self, task: str, success: bool, seed: int) -> Clip | None:
        """Record one clip showing `task`'s outcome `success`; None after max_attempts."""
        cfg = self.config
        self.rng = np.random.default_rng(seed)
        self.picker.rng = self.placer.rng = self.rng
        choices = self.scenarios(task, success)
        names, weights = [c[0] for c in choices], np.array([c[1] for c in choices])
        if cfg.vary_look:
            self.cell.vary_look(self.rng)
        for _attempt in range(cfg.max_attempts):
            scenario = str(self.rng.choice(names, p=weights / weights.sum()))
            self.env.respawn(seed=int(self.rng.integers(2**31)))
            try:
                self.run_scenario(scenario, task)
            except _ScenarioFailed:
                continue
            clip = self._film(task, scenario)
            if clip.outcomes[-1] == success and len(clip.outcomes) >= cfg.min_frames:
                return clip
        return None

    def _film(self, task: str, scenario: str) -> Clip:
        cfg = self.config
        frames: dict[str, list[np.ndarray]] = {c: [] for c in CAMERAS}
        outcomes: list[bool] = []
        for k in range(cfg.frames):
            self._present(wiggle=k > 0)
            self.cell.advance(0.05)  # let released objects settle between frames
            result = self.env.evaluate_oracle()
            images = self.env.render_sd_cameras(cfg.size)
            for camera in CAMERAS:
                frames[camera].append(images[camera])
            outcomes.append(result.success[task])
        # Keep the trailing frames that agree with the final outcome.
        keep = len(outcomes)
        while keep > 0 and outcomes[keep - 1] == outcomes[-1]:
            keep -= 1
        frames = {c: f[keep:] for c, f in frames.items()}
        return Clip(
            frames=frames,
            outcomes=outcomes[keep:],
            oracle=dict(result.success),
            scenario=scenario,
            objects={"held": list(result.held), "lifted": list(result.lifted),
                     "placed": {k: list(v) for k, v in result.placed.items()}},
        )  # fmt: skip


class _ScenarioFailed(RuntimeError):
    """The scene does not allow the planned scenario (e.g. the object is missing)."""


def clip_seed(base: int, cell: int, task_index: int, success: bool, clip: int) -> int:
    """A seed per clip, independent of which other clips are generated."""
    ss = np.random.SeedSequence([base, cell, task_index, int(success), clip])
    return int(ss.generate_state(1)[0])


def generate_cell(
    out: Path, cell: int, clips: int, config: GeneratorConfig, tasks_file: str | None,
    tasks: list[str] | None, progress: bool = True, stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Record every (task, outcome, clip) of one cell; returns counts and timing. `stop` is
    asked before each clip; when it says yes the cell stops (`stats["stopped"]`)."""
    registry = load_task_registry(tasks_file)
    names = tasks or list(registry.names)
    recorder = ClipRecorder(cell, registry, config)
    stats = {"cell": cell, "written": 0, "existing": 0, "given_up": [], "seconds": 0.0,
             "stopped": False}  # fmt: skip
    start = time.perf_counter()
    try:
        for task in names:
            for success in (True, False):
                outcome = "success" if success else "failure"
                for k in range(clips):
                    clip_dir = clip_path(out, task, success, cell, k)
                    if all((clip_dir / f"{c}.mp4").is_file() for c in CAMERAS):
                        stats["existing"] += 1
                        continue
                    if stop is not None and stop():
                        stats["stopped"] = True
                        return stats
                    seed = clip_seed(config.seed, cell, registry.index(task), success, k)
                    clip = recorder.record(task, success, seed)
                    if clip is None:
                        stats["given_up"].append(f"{task}/{outcome}/cell{cell}/clip{k:03d}")
                        continue
                    write_clip(clip_dir, clip, task)
                    stats["written"] += 1
                if progress:
                    elapsed = time.perf_counter() - start
                    print(f"cell {cell}: {task} {outcome} done ({elapsed:.0f} s)", file=sys.stderr)
    finally:
        recorder.close()
    stats["seconds"] = round(time.perf_counter() - start, 1)
    return stats


def _generate_cell_job(args: tuple) -> dict[str, Any]:
    # A pool worker whose parent was killed would go on recording its cell (and race a
    # restarted run for the same clip folders): it stops once it has been orphaned.
    parent = os.getppid()
    return generate_cell(*args, stop=lambda: os.getppid() != parent)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtopt-sd-examples", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="example folder to write")
    p.add_argument("--cells", default="0-6", help="cells, e.g. 0-6 or 0,3")
    p.add_argument("--clips", type=int, default=4, help="clips per task, outcome and cell")
    p.add_argument("--frames", type=int, default=GeneratorConfig.frames)
    p.add_argument("--size", type=int, default=GeneratorConfig.size, help="image side [px]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks-file", default=None, help="task registry (default config/tasks.yaml)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the tasks")
    p.add_argument("--workers", type=int, default=1, help="cells recorded in parallel")
    p.add_argument(
        "--same-look", action="store_true",
        help="film every clip in the cell's own lighting and background (default: vary them)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from mtopt_sd.train_cli import parse_cells

    args = build_parser().parse_args(argv)
    try:
        cells = parse_cells(args.cells)
        config = GeneratorConfig(
            frames=args.frames, size=args.size, seed=args.seed,
            min_frames=min(GeneratorConfig.min_frames, args.frames), vary_look=not args.same_look,
        )  # fmt: skip
        registry = load_task_registry(args.tasks_file)
        tasks = None
        if args.tasks:
            tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
            for t in tasks:
                registry.index(t)
        if args.clips < 1:
            raise ValueError(f"--clips must be >= 1, got {args.clips}")
    except (ValueError, KeyError) as exc:
        print(f"mtopt-sd-examples: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (args.out, c, args.clips, config, args.tasks_file, tasks, not args.quiet) for c in cells
    ]
    started = time.perf_counter()
    if args.workers > 1 and len(jobs) > 1:
        # 'spawn': never fork a process that may hold a GL context.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(args.workers, len(jobs))) as pool:
            per_cell = pool.map(_generate_cell_job, jobs)
    else:
        per_cell = [_generate_cell_job(job) for job in jobs]
    manifest = {
        "layout": CLIP_LAYOUT,
        "fps": VIDEO_RATE_HZ,
        "cameras": list(CAMERAS),
        "tasks": tasks or list(registry.names),
        "clips_per_outcome": args.clips,
        "config": dataclasses.asdict(config),
        "cells": per_cell,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_bytes(args.out / "manifest.json", json.dumps(manifest, indent=1).encode())
    given_up = sum(len(s["given_up"]) for s in per_cell)
    written = sum(s["written"] for s in per_cell)
    print(json.dumps({"written": written, "existing": sum(s["existing"] for s in per_cell),
                      "given_up": given_up, "seconds": manifest["seconds"]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
