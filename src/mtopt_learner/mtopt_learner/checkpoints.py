"""Checkpoint files of a learner run: naming, atomic writing, rotation, resuming.

Layout under a run directory OUT (the same for `mtopt-learn`, its Ray backend and
`learner_node`):

    OUT/checkpoints/qnet_<step>.ckpt (+ .sha256)   weights, target networks, optimizer
    OUT/checkpoints/latest                         the newest file's name (written atomically)
    OUT/checkpoints/run_id                         the run's identity (`run_identity`)

Only the newest `keep` checkpoints are kept.

The run id names one learner run: the checkpoints' steps are the versions its WeightsUpdates
announce, and policies order versions only within a run id (mtopt_policy.policy.WeightsSlot).
A new run gets a fresh random id; a resumed run (a restart over the same OUT, `--resume`)
keeps the stored one, so its numbering goes on under the same id.
"""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from mtopt_core.checkpoint import atomic_write_bytes
from mtopt_core.trainer import Trainer
from mtopt_learner.errors import LearnError

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
RUN_ID = "run_id"
KEEP_CHECKPOINTS = 3
_CKPT_NAME = re.compile(r"^qnet_(\d+)\.ckpt$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def checkpoint_steps(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the `qnet_<step>.ckpt` files in a directory, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for path in ckpt_dir.iterdir():
        m = _CKPT_NAME.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint OUT/checkpoints/latest names, None when there is no pointer file."""
    pointer = Path(out_dir) / CHECKPOINT_DIR / LATEST
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    path = pointer.parent / name
    if not name or not path.is_file():
        raise LearnError(f"{pointer} names {name!r}, which does not exist")
    return path


def resume_point(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run over `out_dir` continues from (None: a new run).

    Refuses to resume without a checkpoint, and to start a new run over checkpoints.
    """
    ckpt_dir = Path(out_dir) / CHECKPOINT_DIR
    latest = latest_checkpoint(out_dir)
    if resume and latest is None:
        raise LearnError(f"--resume: no checkpoint to resume in {ckpt_dir} (no '{LATEST}' file)")
    if not resume and (latest is not None or checkpoint_steps(ckpt_dir)):
        raise LearnError(
            f"{ckpt_dir} already holds checkpoints; pass --resume to continue that run or choose"
            " another --out"
        )
    return latest


def new_run_id() -> str:
    """A fresh random run id (32 hex digits)."""
    return uuid.uuid4().hex


def read_run_id(out_dir: Path) -> str | None:
    """The run id stored in OUT/checkpoints/run_id; None when there is none or it is not one."""
    try:
        text = (Path(out_dir) / CHECKPOINT_DIR / RUN_ID).read_text(errors="replace").strip()
    except OSError:
        return None
    return text if _RUN_ID.match(text) else None


def run_identity(out_dir: Path, resumed: bool) -> tuple[str, bool]:
    """(run id, whether it was kept) of the run over `out_dir` that starts now.

    A resumed run keeps its stored id. A new run, or a resumed one without a stored id (a run
    directory from before run ids, or one written by `mtopt-learn`), gets a fresh id, stored
    atomically before any checkpoint is announced.
    """
    if resumed:
        stored = read_run_id(out_dir)
        if stored is not None:
            return stored, True
    run_id = new_run_id()
    ckpt_dir = Path(out_dir) / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(ckpt_dir / RUN_ID, f"{run_id}\n".encode())
    return run_id, False


class CheckpointWriter:
    """Writes `qnet_<step>.ckpt` + the `latest` pointer atomically; keeps the newest few.

    The pointer moves only after the new file is complete, and older files are deleted only
    after that, so a crash at any point leaves `latest` naming a complete checkpoint.
    """

    def __init__(self, ckpt_dir: Path, keep: int = KEEP_CHECKPOINTS):
        self.dir = ckpt_dir
        self.keep = keep
        self.last_step: int | None = None
        self.last_path: Path | None = None
        self.last_sha256 = ""

    def resume(self, trainer: Trainer, path: Path) -> int:
        """Load `path` (weights, targets, optimizer, step) into `trainer`; returns the step."""
        ckpt = trainer.load_checkpoint(path)
        self.last_step, self.last_path, self.last_sha256 = ckpt.step, path, ckpt.file_sha256
        return ckpt.step

    def save(self, trainer: Trainer) -> Path:
        step = trainer.step_count
        path = self.dir / f"qnet_{step}.ckpt"
        self.last_sha256 = trainer.save_checkpoint(path, training_state=True)
        atomic_write_bytes(self.dir / LATEST, f"{path.name}\n".encode())
        self.last_step, self.last_path = step, path
        for _, old in checkpoint_steps(self.dir)[: -self.keep]:
            old.unlink(missing_ok=True)
            Path(f"{old}.sha256").unlink(missing_ok=True)
        return path

    @contextlib.contextmanager
    def final_save(self, trainer: Trainer) -> Iterator[None]:
        """Wrap a training loop so no finished step is lost.

        Ctrl-C: the unsaved steps are written, then the interrupt goes on. Normal end: the last
        step is written unless it already was. Any end: the trainer is closed.
        """
        try:
            yield
        except KeyboardInterrupt:
            if trainer.step_count != self.last_step:
                path = self.save(trainer)
                print(f"interrupted: wrote {path} at step {trainer.step_count}", file=sys.stderr)
            raise
        finally:
            trainer.close()
        if self.last_step != trainer.step_count:
            self.save(trainer)
