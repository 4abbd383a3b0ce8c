"""Success-detector benchmark: `python -m mtopt_sd.bench [--quick]` prints one JSON line.

Measures, in one process on the CPU:
  * grade latency: one episode (three rgb8 Image messages of the model's size) through the SD
    node's grading path (validation, Image -> numpy, inference), p50 / p90 / mean ms;
  * training throughput: balanced sampling + augmentation + forward/backward/AdamW step,
    in examples/s and camera images/s (3 per example), and the same without augmentation
    (ratio = cost of augmentation);
  * augmentation: the batched `augment_views` against a per-example loop over it (speedup of
    vectorising).
The model is the default `SDModelConfig` for the 12 registry tasks at --image-size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtopt_bridge.image import numpy_to_image
from mtopt_core.sd_model import SDModelConfig, SuccessDetector, save_checkpoint
from mtopt_core.tasks import load_task_registry
from mtopt_sd.augment import AugmentConfig, augment_views
from mtopt_sd.grader import Grader
from mtopt_sd.sd_data import SDDataset, SDExample
from mtopt_sd.training import SDTrainer, TrainConfig


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_grade(config: SDModelConfig, reps: int) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sd.ckpt"
        save_checkpoint(path, SuccessDetector(config), {"version": "bench"})
        grader = Grader(path, config.task_names)
    times = []
    for i in range(reps + 5):
        arrays = rng.integers(0, 256, (3, config.image_size, config.image_size, 3), np.uint8)
        images = [numpy_to_image(a, "rgb8") for a in arrays]
        start = time.perf_counter()
        grader.grade_images(images)
        if i >= 5:  # warm-up excluded
            times.append((time.perf_counter() - start) * 1e3)
    return {
        "grade_ms_p50": round(_percentile(times, 50), 3),
        "grade_ms_p90": round(_percentile(times, 90), 3),
        "grade_ms_mean": round(statistics.fmean(times), 3),
    }


def _synthetic_dataset(registry, image_size: int, n: int) -> SDDataset:
    rng = np.random.default_rng(1)
    names = registry.names
    examples = [
        SDExample(
            rng.integers(0, 256, (3, image_size, image_size, 3), np.uint8),
            cell=i % 6,
            labels={names[i % len(names)]: bool(i % 3 == 0)},
        )
        for i in range(n)
    ]
    return SDDataset.from_examples(examples, registry)


def bench_train(config: SDModelConfig, dataset: SDDataset, steps: int, batch: int) -> dict:
    result = {}
    for name, augment in (("augmented", AugmentConfig()), ("plain", AugmentConfig.none())):
        train_config = TrainConfig(steps=steps + 3, batch_size=batch, augment=augment)
        trainer = SDTrainer(config, dataset, train_config)
        for _ in range(3):  # warm-up
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        elapsed = time.perf_counter() - start
        result[name] = steps * batch / elapsed
    views = len(config.cameras)
    return {
        "train_examples_per_s": round(result["augmented"], 1),
        "train_images_per_s": round(result["augmented"] * views, 1),
        "train_images_per_s_no_augment": round(result["plain"] * views, 1),
        "augment_cost_ratio": round(result["plain"] / result["augmented"], 3),
    }


def bench_augment(image_size: int, batch: int, reps: int) -> dict:
    x = torch.rand(batch, 3, 3, image_size, image_size)
    gen = torch.Generator().manual_seed(0)
    cfg = AugmentConfig()

    def timed(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - start) / reps

    batched = timed(lambda: augment_views(x, cfg, gen))
    looped = timed(lambda: [augment_views(x[i : i + 1], cfg, gen) for i in range(batch)])
    return {
        "augment_ms_per_batch": round(batched * 1e3, 3),
        "augment_vectorised_speedup": round(looped / batched, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mtopt_sd.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    registry = load_task_registry()
    config = SDModelConfig(task_names=registry.names, image_size=args.image_size)
    grade_reps, steps, aug_reps = (20, 5, 3) if args.quick else (200, 40, 20)
    dataset = _synthetic_dataset(registry, args.image_size, 4 * args.batch_size)
    result = {
        "bench": "mtopt_sd",
        "quick": args.quick,
        "threads": args.threads,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "tasks": len(registry),
        "parameters": sum(p.numel() for p in SuccessDetector(config).parameters()),
        **bench_grade(config, grade_reps),
        **bench_train(config, dataset, steps, args.batch_size),
        **bench_augment(args.image_size, args.batch_size, aug_reps),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
