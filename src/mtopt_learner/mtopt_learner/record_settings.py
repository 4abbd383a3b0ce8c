"""Record in a checkpoint the policy settings it was trained for.

    python -m mtopt_learner.record_settings IN.ckpt OUT.ckpt --policy-camera wrist \\
        --action-frame tool [--policy-roi X0 Y0 X1 Y1]

The learner records its `policy_camera`, `policy_roi` and `action_frame` in every checkpoint
(`mtopt_core.checkpoint.POLICY_SETTINGS_KEY`), and a policy node with other settings refuses
the weights. Checkpoints written before it did carry no record and load on any cell. This
writes a copy of such a checkpoint with the record (weights, step, training state and the other
metadata unchanged), e.g. before releasing it. A checkpoint that already records other values
is refused: the record says how the network was trained, so it is never rewritten.

Prints one JSON line (out, sha256, policy_settings); exit 2 for a bad checkpoint or option.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtopt_core.action import ACTION_FRAMES
from mtopt_core.checkpoint import (
    POLICY_SETTINGS_KEY,
    CheckpointError,
    describe_mismatch,
    policy_settings_mismatch,
    policy_settings_of,
    qnet_from_checkpoint,
    save_checkpoint,
)
from mtopt_core.images import check_roi
from mtopt_learner.config import add_policy_roi_argument

PROG = "python -m mtopt_learner.record_settings"


def record_settings(src: Path, dst: Path, settings: dict) -> str:
    """Write `src` with `settings` recorded to `dst` (atomically, with its sidecar); returns the
    new file's sha256. Raises CheckpointError for a bad `src` or a record that disagrees."""
    qnet, ckpt = qnet_from_checkpoint(src)
    mismatch = policy_settings_mismatch(ckpt.metadata, settings)
    if mismatch:
        raise CheckpointError(src, describe_mismatch(mismatch, "asked to record"))
    metadata = {**ckpt.metadata, POLICY_SETTINGS_KEY: settings}
    return save_checkpoint(dst, qnet, ckpt.task_names, ckpt.step, metadata, ckpt.extra)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", type=Path, help="checkpoint without a record")
    p.add_argument("out", type=Path, help="the copy with the record")
    p.add_argument("--policy-camera", required=True, help="the policy node's policy_camera")
    p.add_argument("--action-frame", required=True, choices=ACTION_FRAMES)
    add_policy_roi_argument(p, "the policy node's policy_roi (default: the whole frame)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_roi(args.policy_roi, "--policy-roi")
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.out.resolve() == args.source.resolve():
        print(f"{PROG}: OUT must be another file than the source", file=sys.stderr)
        return 2
    settings = policy_settings_of(args)
    try:
        digest = record_settings(args.source, args.out, settings)
    except CheckpointError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "sha256": digest, "policy_settings": settings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
