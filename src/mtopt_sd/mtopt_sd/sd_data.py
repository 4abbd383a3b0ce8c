"""Success-detector data: examples, label sharing, class balancing, holdout split, Table III.

Two sources of labelled examples (seed Sec. XI):
  * example videos a user records for a task, success and failure, in the folder layout
    ``<root>/<task>/<success|failure>/<cell>/<clip>/<camera>.mp4`` (one video per camera,
    recorded together); every frame of a success video shows the task's success, every frame
    of a failure video its failure. Videos are sampled at 5 Hz.
  * final frames of logged episodes with their labels: `examples_from_episodes` takes
    (3 images, cell, {task: bool}) triples.

Label sharing: the labels an example was recorded with are extended with everything the task
registry's feasibility rules imply (`TaskRegistry.share_labels`): a lift-carrot success is also
a lift-any success and a failure of every other lift-X task. Outcomes that stay unknown are
masked out of the loss. For Table III the two kinds are kept apart: `direct` labels (as
recorded) and `shared` ones (implied by another task's label).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.images import square_resize
from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import LabelConflictError, TaskRegistry

OUTCOMES = {"success": True, "failure": False}
VIDEO_RATE_HZ = 5.0
_CELL_DIR = re.compile(r"^(?:cell[_-]?)?(\d+)$")


class SDDataError(ValueError):
    """Example data is malformed; the message names the file or example and the problem."""


@dataclass
class SDExample:
    """One labelled multi-camera observation.

    Fields:
        images: uint8 RGB images (V, S, S, 3), one per camera in `CAMERAS` order.
        cell: id of the robot cell that produced it (the holdout split is by cell).
        labels: task -> success as recorded (before label sharing).
        source: where it came from (clip path and frame, or episode id), for error messages.
    """

    images: np.ndarray
    cell: int
    labels: dict[str, bool]
    source: str = ""


def parse_cell(name: str) -> int:
    """Cell id from a folder name: "3", "cell3", "cell_3" or "cell-3"."""
    match = _CELL_DIR.match(name)
    if not match:
        raise SDDataError(f"cell folder {name!r} is not a cell id (expected e.g. '3' or 'cell3')")
    return int(match.group(1))


def read_video(path: str | os.PathLike, rate_hz: float = VIDEO_RATE_HZ) -> list[np.ndarray]:
    """Decode a video with OpenCV and keep the first frame of every 1/rate_hz interval.

    Returns RGB uint8 frames. Videos recorded at rate_hz or slower keep every frame.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SDDataError(f"{path}: cannot open video")
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise SDDataError(f"{path}: video reports no frame rate")
        frames: list[np.ndarray] = []
        last_bin = -1
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            # Time bin of this frame at the target rate; small epsilon against fps rounding.
            time_bin = math.floor(index * rate_hz / fps + 1e-6)
            if time_bin > last_bin:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                last_bin = time_bin
            index += 1
    finally:
        cap.release()
    if not frames:
        raise SDDataError(f"{path}: video has no frames")
    return frames


def load_example_videos(
    root: str | os.PathLike,
    registry: TaskRegistry | None = None,
    image_size: int = 64,
    cameras: Sequence[str] = CAMERAS,
    rate_hz: float = VIDEO_RATE_HZ,
    cells: Iterable[int] | None = None,
) -> list[SDExample]:
    """Read ``<root>/<task>/<success|failure>/<cell>/<clip>/<camera>.mp4`` into examples.

    Each 5 Hz time step of a clip becomes one example holding the frames of all cameras at that
    time (the shortest camera video bounds the clip), labelled {task: outcome}. Task folders
    must name registry tasks (when a registry is given); `cells` restricts the cells read.
    """
    root = Path(root)
    if not root.is_dir():
        raise SDDataError(f"{root}: example folder does not exist")
    wanted = set(cells) if cells is not None else None
    examples: list[SDExample] = []
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        task = task_dir.name
        if registry is not None and task not in registry:
            raise SDDataError(
                f"{task_dir}: folder names unknown task {task!r}; known tasks: "
                f"{', '.join(registry.names)}"
            )
        for outcome_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            if outcome_dir.name not in OUTCOMES:
                raise SDDataError(f"{outcome_dir}: expected a 'success' or 'failure' folder")
            success = OUTCOMES[outcome_dir.name]
            for cell_dir in sorted(p for p in outcome_dir.iterdir() if p.is_dir()):
                cell = parse_cell(cell_dir.name)
                if wanted is not None and cell not in wanted:
                    continue
                # `<clip>.part`: a clip still being written (mtopt-sd-examples renames it).
                clips = (p for p in cell_dir.iterdir() if p.is_dir() and p.suffix != ".part")
                for clip_dir in sorted(clips):
                    examples.extend(
                        _clip_examples(clip_dir, task, success, cell, image_size, cameras, rate_hz)
                    )
    if not examples:
        raise SDDataError(f"{root}: no example clips found (layout <task>/<outcome>/<cell>/...)")
    return examples


def _clip_examples(clip_dir, task, success, cell, image_size, cameras, rate_hz):
    views = []
    for camera in cameras:
        video = clip_dir / f"{camera}.mp4"
        if not video.is_file():
            raise SDDataError(f"{clip_dir}: missing camera video {video.name}")
        views.append([square_resize(f, image_size) for f in read_video(video, rate_hz)])
    steps = min(len(v) for v in views)
    return [
        SDExample(
            images=np.stack([view[t] for view in views]),
            cell=cell,
            labels={task: success},
            source=f"{clip_dir}#{t}",
        )
        for t in range(steps)
    ]


def examples_from_episodes(
    items: Iterable[tuple[Sequence[np.ndarray], int, Mapping[str, bool]]],
    image_size: int = 64,
) -> list[SDExample]:
    """Final frames of logged episodes -> examples.

    Each item is (images, cell, labels): the final RGB uint8 image of each camera in
    `CAMERAS` order (any size; centre-cropped and resized to image_size), the cell id and the
    episode's known outcomes {task: success}.
    """
    examples = []
    for i, (images, cell, labels) in enumerate(items):
        if len(images) != len(CAMERAS):
            raise SDDataError(
                f"episode item {i}: expected {len(CAMERAS)} images, got {len(images)}"
            )
        frames = []
        for camera, image in zip(CAMERAS, images, strict=True):
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise SDDataError(
                    f"episode item {i}: {camera} image must be uint8 (H, W, 3), got "
                    f"{image.dtype} {image.shape}"
                )
            frames.append(square_resize(image, image_size))
        examples.append(
            SDExample(
                images=np.stack(frames),
                cell=int(cell),
                labels={str(k): bool(v) for k, v in labels.items()},
                source=f"episode item {i}",
            )
        )
    return examples


@dataclass
class SDDataset:
    """Examples as tensors with shared labels.

    Fields:
        task_names: column order of the label tensors (registry order).
        images: uint8 (N, V, 3, S, S).
        targets: float (N, T), 1 = success; meaningless where `known` is False.
        known: bool (N, T), the outcome is known after label sharing (loss mask).
        direct: bool (N, T), the outcome was recorded for this task (not implied by another).
        cells: int64 (N,), cell id of each example.
        sources: where each example came from.
    """

    task_names: tuple[str, ...]
    images: torch.Tensor
    targets: torch.Tensor
    known: torch.Tensor
    direct: torch.Tensor
    cells: torch.Tensor
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @classmethod
    def from_examples(cls, examples: Sequence[SDExample], registry: TaskRegistry) -> SDDataset:
        """Stack examples and apply the registry's label sharing to each."""
        if not examples:
            raise SDDataError("no examples")
        names = registry.names
        n, t = len(examples), len(names)
        targets = torch.zeros((n, t), dtype=torch.float32)
        known = torch.zeros((n, t), dtype=torch.bool)
        direct = torch.zeros((n, t), dtype=torch.bool)
        shape = examples[0].images.shape
        images = np.empty((n, *shape), dtype=np.uint8)
        for i, ex in enumerate(examples):
            if ex.images.shape != shape or ex.images.dtype != np.uint8:
                raise SDDataError(
                    f"{ex.source}: images {ex.images.dtype} {ex.images.shape} differ from the "
                    f"first example's uint8 {shape}"
                )
            images[i] = ex.images
            try:
                shared = registry.share_labels(ex.labels)
            except (LabelConflictError, KeyError) as exc:
                raise SDDataError(f"{ex.source}: {exc}") from exc
            for task, success in shared.items():
                j = registry.index(task)
                known[i, j] = True
                targets[i, j] = float(success)
                direct[i, j] = task in ex.labels
        return cls(
            task_names=names,
            images=torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous(),
            targets=targets,
            known=known,
            direct=direct,
            cells=torch.tensor([ex.cell for ex in examples], dtype=torch.int64),
            sources=[ex.source for ex in examples],
        )

    def subset(self, index: torch.Tensor) -> SDDataset:
        """The examples at `index` (bool mask or integer indices)."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        return SDDataset(
            task_names=self.task_names,
            images=self.images[index],
            targets=self.targets[index],
            known=self.known[index],
            direct=self.direct[index],
            cells=self.cells[index],
            sources=[self.sources[i] for i in index.tolist()] if self.sources else [],
        )

    def count_table(self) -> list[tuple[str, int, int]]:
        """(task, successes, failures) known after sharing, per task."""
        pos = (self.known & (self.targets > 0.5)).sum(0).tolist()
        neg = (self.known & (self.targets < 0.5)).sum(0).tolist()
        return list(zip(self.task_names, pos, neg, strict=True))


def split_by_cell(dataset: SDDataset, holdout_cell: int) -> tuple[SDDataset, SDDataset]:
    """(train, holdout): every example of `holdout_cell` goes to holdout, all others to train.

    The seed splits by robot, never randomly, to test generalisation to an unseen cell.
    """
    cells = sorted(set(dataset.cells.tolist()))
    if holdout_cell not in cells:
        raise SDDataError(f"holdout cell {holdout_cell} has no examples; cells present: {cells}")
    if len(cells) < 2:
        raise SDDataError(f"need examples from at least two cells to hold one out, got {cells}")
    held = dataset.cells == holdout_cell
    return dataset.subset(~held), dataset.subset(held)


class BalancedSampler:
    """Draws training batches balanced over tasks and, inside a task, success vs failure.

    Each draw picks a task uniformly among the tasks with known labels, then success or failure
    with probability 1/2 (the available one when a task has only one), then an example with that
    outcome uniformly. The example's other known labels train the other tasks too.
    """

    def __init__(self, dataset: SDDataset, generator: torch.Generator | None = None):
        self.generator = generator
        groups: list[torch.Tensor] = []
        for j in range(len(dataset.task_names)):
            for outcome in (True, False):
                mask = dataset.known[:, j] & ((dataset.targets[:, j] > 0.5) == outcome)
                groups.append(torch.nonzero(mask).flatten())
        sizes = torch.tensor([len(g) for g in groups], dtype=torch.int64).view(-1, 2)
        self.tasks = torch.nonzero(sizes.sum(1) > 0).flatten()
        if len(self.tasks) == 0:
            raise SDDataError("no example has a known label; nothing to train on")
        self.single_outcome_tasks = [
            dataset.task_names[j] for j in self.tasks.tolist() if (sizes[j] == 0).any()
        ]
        self._sizes = sizes
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.flatten()[:-1]])
        self._offsets = torch.cumsum(starts, 0).view(-1, 2)
        self._flat = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.int64)

    def sample(self, batch_size: int) -> torch.Tensor:
        """Indices (batch_size,) into the dataset."""
        g = self.generator
        task = self.tasks[torch.randint(len(self.tasks), (batch_size,), generator=g)]
        outcome = (torch.rand(batch_size, generator=g) < 0.5).long()  # column 0 = success
        sizes = self._sizes[task]
        # Fall back to the other outcome where the drawn one has no examples.
        outcome = torch.where(sizes.gather(1, outcome[:, None])[:, 0] > 0, outcome, 1 - outcome)
        size = sizes.gather(1, outcome[:, None])[:, 0]
        offset = self._offsets[task].gather(1, outcome[:, None])[:, 0]
        pick = (torch.rand(batch_size, generator=g) * size).long().clamp_max(size - 1)
        return self._flat[offset + pick]


def masked_bce_loss(logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor):
    """Binary cross-entropy averaged over the known (task, example) entries only."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    mask = known.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def balanced_bce_loss(logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor):
    """Binary cross-entropy balanced per task and outcome, over known entries only.

    For each task with known labels in the batch, the mean loss over its successes and the mean
    over its failures count half each (all of it when the batch has only one kind); tasks are
    then averaged. Label sharing makes the known labels of a task lopsided even in a batch
    sampled for balance (every lift-X success is a failure of six other lift tasks and a
    success of lift-any), so without this a task's rare outcome would be drowned out.
    """
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    pos = (known & (targets > 0.5)).to(loss.dtype)
    neg = (known & (targets <= 0.5)).to(loss.dtype)
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    mean_pos = (loss * pos).sum(0) / n_pos.clamp_min(1.0)
    mean_neg = (loss * neg).sum(0) / n_neg.clamp_min(1.0)
    has_pos, has_neg = (n_pos > 0).to(loss.dtype), (n_neg > 0).to(loss.dtype)
    weight_pos = has_pos / (has_pos + has_neg).clamp_min(1.0)
    weight_neg = has_neg / (has_pos + has_neg).clamp_min(1.0)
    per_task = weight_pos * mean_pos + weight_neg * mean_neg
    present = ((n_pos + n_neg) > 0).to(loss.dtype)
    return (per_task * present).sum() / present.sum().clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# Table III


@dataclass(frozen=True)
class Rate:
    """errors / count, or None when count is 0 (no such examples)."""

    errors: int
    count: int

    @property
    def value(self) -> float | None:
        return self.errors / self.count if self.count else None

    def percent(self) -> str:
        v = self.value
        return "n/a" if v is None else f"{100 * v:.1f}% ({self.errors}/{self.count})"


@dataclass(frozen=True)
class Table3Row:
    """Holdout statistics of the success detector of one task (seed Table III).

    total / success / failure: held-out examples whose outcome for this task is known (recorded
        or implied by the rules), and how many of them are successes / failures.
    false_negative / false_positive: over the examples *recorded for this task*: successes
        graded failure / failures graded success.
    other_false_negative / other_false_positive: over the examples recorded for *other* tasks
        B whose labels imply this task's outcome via the rules (e.g. the lift-banana SD on a
        lift-carrot success, which implies lift-banana failure): implied successes graded
        failure / implied failures graded success.
    """

    task: str
    total: int
    success: int
    failure: int
    false_negative: Rate
    false_positive: Rate
    other_false_negative: Rate
    other_false_positive: Rate

    @property
    def success_rate(self) -> float | None:
        return self.success / self.total if self.total else None


def table3(
    probabilities: torch.Tensor | np.ndarray, dataset: SDDataset, threshold: float = 0.5
) -> list[Table3Row]:
    """Per-task Table III rows for P(success) (N, T) graded on `dataset` (the holdout)."""
    p = torch.as_tensor(probabilities, dtype=torch.float32)
    if tuple(p.shape) != (len(dataset), len(dataset.task_names)):
        raise ValueError(
            f"probabilities {tuple(p.shape)} do not match the dataset "
            f"({len(dataset)}, {len(dataset.task_names)})"
        )
    predicted = p >= threshold
    positive = dataset.targets > 0.5
    rows = []
    for j, task in enumerate(dataset.task_names):
        known = dataset.known[:, j]
        own = known & dataset.direct[:, j]
        other = known & ~dataset.direct[:, j]
        pos, pred = positive[:, j], predicted[:, j]

        def rate(group: torch.Tensor, want_positive: bool, pos=pos, pred=pred) -> Rate:
            members = group & (pos if want_positive else ~pos)
            wrong = members & (pred != want_positive)
            return Rate(int(wrong.sum()), int(members.sum()))

        rows.append(
            Table3Row(
                task=task,
                total=int(known.sum()),
                success=int((known & pos).sum()),
                failure=int((known & ~pos).sum()),
                false_negative=rate(own, True),
                false_positive=rate(own, False),
                other_false_negative=rate(other, True),
                other_false_positive=rate(other, False),
            )
        )
    return rows


def misgraded(
    probabilities: torch.Tensor | np.ndarray, dataset: SDDataset, threshold: float = 0.5
) -> list[dict[str, Any]]:
    """Every (example, task) that `table3` counts as an error, for error analysis: source, task,
    label ("success" / "failure"), whether the outcome was recorded for the task (else implied
    by label sharing) and P(success); sorted by source then task."""
    p = torch.as_tensor(probabilities, dtype=torch.float32)
    wrong = dataset.known & ((p >= threshold) != (dataset.targets > 0.5))
    errors = []
    for i, j in wrong.nonzero().tolist():
        errors.append(
            {
                "source": dataset.sources[i] if dataset.sources else str(i),
                "task": dataset.task_names[j],
                "label": "success" if dataset.targets[i, j] > 0.5 else "failure",
                "recorded": bool(dataset.direct[i, j]),
                "probability": round(float(p[i, j]), 4),
            }
        )
    return sorted(errors, key=lambda e: (e["source"], e["task"]))


def mean_rate(rows: Sequence[Table3Row], column: str) -> float | None:
    """Mean over tasks of one rate column, skipping tasks where it is n/a."""
    values = [getattr(r, column).value for r in rows]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


RATE_COLUMNS = ("false_negative", "false_positive", "other_false_negative", "other_false_positive")

TABLE3_CAPTION = (
    "Success detector holdout statistics (seed Table III). Total / Success / Failure count "
    "the held-out examples whose outcome for the task is known, recorded or implied by the "
    "feasibility rules. False negative / positive rates are over the examples recorded for the "
    "task itself. Other-task false negative / positive rates are over the examples recorded for "
    "other tasks B whose labels imply this task's outcome (e.g. the lift-banana SD on a "
    "lift-carrot success, an implied lift-banana failure). Rates show (errors/examples); n/a "
    "means there were no such examples. Threshold 0.5."
)


def table3_markdown(rows: Sequence[Table3Row], title: str = "") -> str:
    """Table III as a markdown table (+ a mean row and the caption)."""
    header = (
        "| Task | Total | Success | Failure | Success rate | False negative rate | "
        "False positive rate | Other-task false negative rate | Other-task false positive "
        "rate |"
    )
    lines = [f"## {title}", ""] if title else []
    lines += [header, "|" + "---|" * 9]
    for r in rows:
        sr = "n/a" if r.success_rate is None else f"{100 * r.success_rate:.0f}%"
        rates = " | ".join(getattr(r, c).percent() for c in RATE_COLUMNS)
        lines.append(f"| {r.task} | {r.total} | {r.success} | {r.failure} | {sr} | {rates} |")
    means = []
    for c in RATE_COLUMNS:
        m = mean_rate(rows, c)
        means.append("n/a" if m is None else f"{100 * m:.1f}%")
    lines.append(f"| **mean over tasks** | | | | | {' | '.join(means)} |")
    lines += ["", TABLE3_CAPTION, ""]
    return "\n".join(lines)


def table3_csv(rows: Sequence[Table3Row]) -> str:
    """Table III as CSV with raw counts (rates as fractions, empty when n/a)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["task", "total", "success", "failure", "success_rate"]
    for c in RATE_COLUMNS:
        head += [f"{c}_rate", f"{c}_errors", f"{c}_count"]
    writer.writerow(head)
    for r in rows:
        row: list = [r.task, r.total, r.success, r.failure]
        row.append("" if r.success_rate is None else f"{r.success_rate:.6f}")
        for c in RATE_COLUMNS:
            rate: Rate = getattr(r, c)
            row += ["" if rate.value is None else f"{rate.value:.6f}", rate.errors, rate.count]
        writer.writerow(row)
    return out.getvalue()


def write_table3(rows: Sequence[Table3Row], stem: str | os.PathLike, title: str = "") -> tuple:
    """Write `<stem>.md` and `<stem>.csv` atomically; return both paths."""
    stem = Path(stem)
    md, csv_path = stem.parent / f"{stem.name}.md", stem.parent / f"{stem.name}.csv"
    atomic_write_bytes(md, table3_markdown(rows, title).encode())
    atomic_write_bytes(csv_path, table3_csv(rows).encode())
    return md, csv_path
