"""`mtopt-sd-train`: train the success detector on example videos, evaluate on a held-out cell.

    mtopt-sd-train --data DIR --holdout-cell 6 --out sd.ckpt [--steps 3000]

Reads ``DIR/<task>/<success|failure>/<cell>/<clip>/<camera>.mp4`` at 5 Hz, shares labels with
the task registry's feasibility rules, holds out every example of one cell (never a random
split), trains with task/outcome-balanced batches and augmentation, then prints and writes the
seed's Table III for the held-out cell (markdown + CSV) and writes the checkpoint atomically
with its sha256.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import torch

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.sd_model import POOLINGS, VIEW_ENCODERS, SDModelConfig, save_checkpoint
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_sd.augment import AugmentConfig
from mtopt_sd.sd_data import (
    SDDataError,
    SDDataset,
    load_example_videos,
    misgraded,
    split_by_cell,
    table3_markdown,
    write_table3,
)
from mtopt_sd.training import SDTrainer, TrainConfig, summarize


def _holdout(value: str) -> int | None:
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cell id or 'none', got {value!r}") from None


#: Regions of interest (x0, y0, x1, y1 as fractions; overhead, left_shoulder, right_shoulder)
#: for `--crops sim`: the simulated cell's plate (centred, so the overhead view can be turned
#: about it) and plate bin in the overhead and left_shoulder views, and the gripper at the
#: grading pose in the right_shoulder view (see src/mtopt_sd/README.md).
CROP_PRESETS = {
    "sim": ((0.47, 0.24, 0.88, 0.65), (0.08, 0.28, 0.66, 0.86), (0.26, 0.0, 0.86, 0.60)),
}


def parse_crops(text: str) -> tuple[tuple[float, ...], ...]:
    """`sim`, `none`/'' or `x0,y0,x1,y1;x0,y0,x1,y1;x0,y0,x1,y1` (one box per camera)."""
    if text in ("", "none"):
        return ()
    if text in CROP_PRESETS:
        return CROP_PRESETS[text]
    try:
        return tuple(tuple(float(v) for v in box.split(",")) for box in text.split(";"))
    except ValueError:
        raise ValueError(
            f"--crops must be one of {sorted(CROP_PRESETS)}, none, or x0,y0,x1,y1;... per "
            f"camera; got {text!r}"
        ) from None


def parse_augment(text: str) -> AugmentConfig:
    """`key=value,...` -> AugmentConfig with those fields changed (ValueError names a bad key)."""
    fields = {f.name: f for f in dataclasses.fields(AugmentConfig)}
    changes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"--augment: {item!r} is not KEY=VALUE with KEY one of {sorted(fields)}"
            )
        kind = type(getattr(AugmentConfig(), key))
        try:
            if kind is tuple:  # one value per view, '/'-separated: 180/8/8
                changes[key] = tuple(float(part) for part in value.split("/"))
            else:
                changes[key] = kind(value)
        except ValueError:
            what = "values like 180/8/8" if kind is tuple else f"a {kind.__name__}"
            raise ValueError(f"--augment: {key} takes {what}, got {value!r}") from None
    return dataclasses.replace(AugmentConfig(), **changes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtopt-sd-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        type=Path,
        help="example-video folder (repeatable)",
    )
    p.add_argument(
        "--holdout-cell",
        required=True,
        type=_holdout,
        help="cell whose examples are only evaluated ('none': train on all)",
    )
    p.add_argument("--out", required=True, type=Path, help="checkpoint file to write")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--eval-every", type=int, default=0, help="holdout eval period (0: at end)")
    p.add_argument(
        "--image-size", type=int, default=64, help="model input (camera image) side [px]"
    )
    p.add_argument(
        "--crops",
        default="none",
        help="region of interest per camera: 'sim' (the simulated cell's), 'none', or "
        "x0,y0,x1,y1;... fractions in camera order",
    )
    p.add_argument(
        "--encoder-size", type=int, default=0, help="side views are resized to (0: image size)"
    )
    p.add_argument("--view-encoders", choices=VIEW_ENCODERS, default="shared")
    p.add_argument("--pooling", choices=POOLINGS, default=SDModelConfig.pooling)
    p.add_argument(
        "--channels",
        default=None,
        help="encoder conv channels, e.g. 16,32,64,64 (default: the model's)",
    )
    p.add_argument(
        "--tasks-file", type=Path, default=None, help="task registry (default: config/tasks.yaml)"
    )
    p.add_argument(
        "--cells", default=None, help="only read these cells, e.g. 0-6 or 0,2,5 (default: all)"
    )
    p.add_argument(
        "--table",
        type=Path,
        default=None,
        help="Table III output stem (writes STEM.md and STEM.csv; default: next to --out)",
    )
    p.add_argument(
        "--errors",
        type=Path,
        default=None,
        help="write every misgraded held-out (example, task) to this CSV (error analysis)",
    )
    p.add_argument(
        "--logdir",
        type=Path,
        default=None,
        help="TensorBoard directory (default: <out dir>/runs/<out name>)",
    )
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--augment",
        default="",
        metavar="KEY=VALUE,...",
        help="override augmentation strengths (AugmentConfig fields), e.g. flat_recolour=0.4",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument(
        "--version",
        default=None,
        help="model version recorded in the checkpoint (default: sd-<UTC time>)",
    )
    return p  # fmt: skip


def write_errors_csv(path: Path, errors: list[dict]) -> None:
    """`misgraded` rows as CSV, written atomically."""
    text = io.StringIO()
    fields = ("source", "task", "label", "recorded", "probability")
    csv_writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    csv_writer.writeheader()
    csv_writer.writerows(errors)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.getvalue().encode())


def parse_cells(text: str | None) -> list[int] | None:
    """ "0-6" or "0,2,5" or "0-2,5" -> sorted cell ids (None -> None)."""
    if text is None:
        return None
    cells: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                cells.update(range(lo, hi + 1))
            else:
                cells.add(int(part))
    except ValueError:
        raise ValueError(f"cells must look like 0-6 or 0,2,5; got {text!r}") from None
    return sorted(cells)


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate, write the table and the checkpoint; returns a summary dict."""
    torch.set_num_threads(max(1, args.threads))
    registry = load_task_registry(args.tasks_file)
    cells = parse_cells(args.cells)
    started = time.perf_counter()
    examples = []
    for folder in args.data:
        examples += load_example_videos(folder, registry, args.image_size, cells=cells)
    dataset = SDDataset.from_examples(examples, registry)
    del examples
    print(
        f"read {len(dataset)} examples from cells {sorted(set(dataset.cells.tolist()))} "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    if args.holdout_cell is None:
        train_set, eval_set = dataset, None
    else:
        train_set, eval_set = split_by_cell(dataset, args.holdout_cell)
    missing = [t for t, pos, neg in train_set.count_table() if pos == 0 or neg == 0]
    if missing:
        print(f"warning: tasks lacking successes or failures in training: {missing}",
              file=sys.stderr)  # fmt: skip

    architecture = {
        "view_encoders": args.view_encoders,
        "pooling": args.pooling,
        "crops": parse_crops(args.crops),
        "encoder_size": args.encoder_size,
    }
    if args.channels:
        try:
            architecture["channels"] = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            raise ValueError(
                f"--channels must be integers like 16,32,64; got {args.channels!r}"
            ) from None
    model_config = SDModelConfig(
        task_names=registry.names, image_size=args.image_size, **architecture
    )
    train_config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        eval_every=args.eval_every,
        augment=AugmentConfig.none() if args.no_augment else parse_augment(args.augment),
    )
    logdir = args.logdir or args.out.parent / "runs" / args.out.name
    from torch.utils.tensorboard import SummaryWriter  # slow import

    writer = SummaryWriter(str(logdir))
    try:
        trainer = SDTrainer(model_config, train_set, train_config, eval_set, writer)
        result = trainer.train(progress=not args.no_progress)
    finally:
        writer.close()

    rows = []
    if eval_set is not None:
        probs, rows = trainer.evaluate()
        title = (
            f"SD holdout: cell {args.holdout_cell} ({len(eval_set)} examples), trained on "
            f"cells {sorted(set(train_set.cells.tolist()))} ({len(train_set)} examples), "
            f"{args.steps} steps"
        )
        print(table3_markdown(rows, title))
        stem = args.table or args.out.parent / f"{args.out.name}.table3"
        md, csv_path = write_table3(rows, stem, title)
        print(f"wrote {md} and {csv_path}", file=sys.stderr)
        if args.errors is not None:
            errors = misgraded(probs, eval_set, train_config.threshold)
            write_errors_csv(args.errors, errors)
            print(f"wrote {len(errors)} misgraded examples to {args.errors}", file=sys.stderr)

    version = args.version or time.strftime("sd-%Y%m%dT%H%M%SZ", time.gmtime())
    meta = {
        "version": version,
        "steps": result["steps"],
        "seed": args.seed,
        "holdout_cell": args.holdout_cell if args.holdout_cell is not None else -1,
        "train_cells": sorted(set(train_set.cells.tolist())),
        "train_examples": len(train_set),
        "train_config": json.dumps(train_config.to_dict()),
        "data": [str(d) for d in args.data],
    }
    if rows:
        meta["holdout_summary"] = summarize(rows)
    sha = save_checkpoint(args.out, trainer.model, meta)
    print(f"wrote checkpoint {args.out} (sha256 {sha})", file=sys.stderr)
    return {"checkpoint": str(args.out), "sha256": sha, "rows": rows, **result}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (SDDataError, TaskRegistryError, ValueError, FileNotFoundError) as exc:
        print(f"mtopt-sd-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtopt-sd-train: interrupted; no checkpoint written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
