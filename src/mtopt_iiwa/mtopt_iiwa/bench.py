"""Kinematics benchmark: FK, one IK solve, and planning a 5 cm policy step (one JSON line).

    python -m mtopt_iiwa.bench [--quick]

Random 5 cm / 0.25 rad steps (the size of one MT-Opt action) from random top-down poses in
the default free space (the two bins). `plan_over_ik` is the cost of a planned step relative
to one IK solve measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mtopt_iiwa.config import IiwaControllerConfig
from mtopt_iiwa.motion import MODE_DELTA, kinematics_for, plan_move, safety_of


def run(samples: int, seed: int = 0) -> dict:
    """Measure and return the numbers."""
    cfg = IiwaControllerConfig().validate()
    kin = kinematics_for(cfg)
    volumes, _ = safety_of(cfg)
    rest = np.array(cfg.rest_q)
    rng = np.random.default_rng(seed)
    starts = []
    while len(starts) < samples:
        box = volumes.bins[int(rng.integers(len(volumes.bins)))]
        sol = kin.ik(
            rng.uniform(box.low, box.high),
            rng.uniform(-1, 1),
            rest,
            rest_q=rest,
        )
        if sol.converged:
            starts.append(sol.q)
    steps = rng.uniform(-1, 1, (samples, 3))
    steps *= 0.05 / np.linalg.norm(steps, axis=1, keepdims=True)
    yaws = rng.uniform(-0.25, 0.25, samples)

    t0 = time.perf_counter()
    for q in starts:
        kin.fk(q)
    fk_s = (time.perf_counter() - t0) / samples

    ik_times, plan_times, errors, clamped = [], [], [], 0
    for q, step, yaw in zip(starts, steps, yaws, strict=True):
        pose = kin.fk(q)
        target = volumes.clamp(pose.position + step, pose.position).position
        t0 = time.perf_counter()
        kin.ik(target, pose.yaw + yaw, q, rest_q=rest)
        ik_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plan = plan_move(kin, cfg, q, MODE_DELTA, step, yaw)
        plan_times.append(time.perf_counter() - t0)
        clamped += plan.clamped
        if not plan.clamped:
            errors.append(float(np.linalg.norm(plan.target_position - target)))
    ik_ms = np.array(ik_times) * 1e3
    plan_ms = np.array(plan_times) * 1e3
    return {
        "bench": "mtopt_iiwa.kinematics",
        "samples": samples,
        "fk_us": round(fk_s * 1e6, 2),
        "ik_ms_p50": round(float(np.percentile(ik_ms, 50)), 3),
        "ik_ms_p95": round(float(np.percentile(ik_ms, 95)), 3),
        "plan_5cm_ms_p50": round(float(np.percentile(plan_ms, 50)), 3),
        "plan_5cm_ms_p95": round(float(np.percentile(plan_ms, 95)), 3),
        "plan_over_ik": round(float(np.median(plan_ms) / np.median(ik_ms)), 2),
        "plan_target_error_mm_max": round(max(errors) * 1e3, 4) if errors else None,
        "clamped_fraction": round(clamped / samples, 3),
    }


def main(argv: list[str] | None = None) -> None:
    """Print one JSON line of results."""
    parser = argparse.ArgumentParser(description="iiwa kinematics benchmark")
    parser.add_argument("--quick", action="store_true", help="50 samples instead of 500")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(run(50 if args.quick else 500, args.seed)))


if __name__ == "__main__":
    main()
