"""Per-task success / failure replay buffers with re-balanced sampling (seed Sec. IV-B, Fig. 11).

Episodes are stored once (their uint8 images as one array per episode). Each relabelled copy
of an episode (see `mtopt_core.impersonation`) is a reference in the buffer of its task and
outcome: per task there is a success buffer and a failure buffer. A transition is an (episode,
step) index; its reward is sparse: 1 on the final transition of an episode relabelled as a
success, else 0, and the final transition is `done`. A batch also says which done rows were
cut by the step limit (`truncated`: the episode's last action did not terminate) and each row's
step index in its episode, for the trainer's truncation and step-input options.

Memory is bounded by a byte budget: when adding an episode pushes the total over it, the oldest
episodes (FIFO, in order of addition) are evicted from every buffer they are in.

Samplers:
- `rebalanced` (MT-Opt): the task is uniform over tasks that hold any data; inside the task,
  success and failure are 50/50 (when one side is empty the other is taken); inside a buffer,
  transitions are uniform.
- `rebalanced_near_miss`: as `rebalanced`, but half of a task's failure draws are the last
  transition of one of its near misses (when it has any): failures of episodes that succeeded
  at another task they are relabelled for, e.g. a lift-banana failure that lifted a bottle, a
  place-bottom failure that placed on the top-left section. Under `rebalanced` the labelled
  end of such a contrast is a fraction of a percent of a task's rows (most failures lift
  nothing, and an episode has 10-20 transitions) against several percent for its successes'
  ends, so a network can score "holds something, terminate" high for every lift-X task and
  still fit the batch; the last transition is where the two outcomes differ.
- `uniform` (the ablation): transitions uniform over all stored relabelled transitions (a
  transition relabelled for k tasks counts k times).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtopt_core.bellman import TorchBatch
from mtopt_core.episode import Episode
from mtopt_core.impersonation import Impersonation, Relabel

SAMPLERS = ("rebalanced", "rebalanced_near_miss", "uniform")
#: The outcome key of a task's near-miss buffer (next to True / False: success / failure).
NEAR_MISS = "near_miss"
# Estimated Python-object cost, counted against the budget next to the arrays' own bytes.
EPISODE_OVERHEAD_BYTES = 1024
REFERENCE_OVERHEAD_BYTES = 64


@dataclass(frozen=True)
class ReplayConfig:
    """Replay buffer settings.

    Fields:
        memory_budget_bytes: upper bound on the bytes held (episode arrays plus a per-episode
            and per-reference overhead estimate); oldest episodes are evicted beyond it.
        sampler: "rebalanced" (tasks uniform, success/failure 50/50 per task),
            "rebalanced_near_miss" (the same, half of the failures near misses) or "uniform"
            (uniform over stored relabelled transitions).
        seed: seed of the sampler's random generator.
    """

    memory_budget_bytes: int = 2 * 1024**3
    sampler: str = "rebalanced"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.memory_budget_bytes, int) or self.memory_budget_bytes <= 0:
            raise ValueError(
                "ReplayConfig.memory_budget_bytes must be a positive integer, got "
                f"{self.memory_budget_bytes!r}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"ReplayConfig.sampler must be one of {SAMPLERS}, got {self.sampler!r}"
            )


@dataclass
class Batch:
    """A batch of B transitions as numpy arrays."""

    image: np.ndarray  # (B, H, W, 3) uint8
    gripper_closed: np.ndarray  # (B,) float32 0/1
    height: np.ndarray  # (B,) float32 [m]
    action: np.ndarray  # (B, 6) float32
    task: np.ndarray  # (B,) int64, index in the task registry
    reward: np.ndarray  # (B,) float32
    done: np.ndarray  # (B,) float32 0/1
    next_image: np.ndarray
    next_gripper_closed: np.ndarray
    next_height: np.ndarray
    episode_success: np.ndarray  # (B,) float32: 1 if the row's relabelled episode succeeded
    object_detected: np.ndarray  # (B,) float32 0/1, the gripper's object-detected flag
    next_object_detected: np.ndarray
    truncated: np.ndarray  # (B,) float32 0/1: done, and the episode ended by its step limit
    step: np.ndarray  # (B,) int64 step index t of the observation in its episode
    steps_left: np.ndarray  # (B,) int64 transitions after this one in its episode

    def __len__(self) -> int:
        return int(self.task.shape[0])

    def to_torch(self, device: torch.device | str = "cpu") -> TorchBatch:
        return TorchBatch(**{k: torch.from_numpy(v).to(device) for k, v in self.__dict__.items()})


class _Entry:
    __slots__ = ("episode", "refs")

    def __init__(self, episode: Episode):
        self.episode = episode
        self.refs: list[tuple[int, bool | str]] = []  # (task, outcome) buffers holding it


class _Fifo:
    """One (task, outcome) buffer: episode keys in insertion order, removal at the front."""

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.lengths: list[int] = []
        self.start = 0
        self.transitions = 0
        self._cumsum: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys) - self.start

    def append(self, key: int, length: int) -> None:
        self.keys.append(key)
        self.lengths.append(length)
        self.transitions += length
        self._cumsum = None

    def popleft(self, key: int) -> None:
        if self.keys[self.start] != key:  # FIFO eviction keeps every buffer in global order
            raise RuntimeError("replay buffer order broken")
        self.transitions -= self.lengths[self.start]
        self.start += 1
        if self.start > 1024 and self.start * 2 > len(self.keys):
            del self.keys[: self.start], self.lengths[: self.start]
            self.start = 0
        self._cumsum = None

    def locate(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat transition indices in [0, transitions) -> (episode keys, step indices)."""
        if self._cumsum is None:
            self._cumsum = np.cumsum(np.asarray(self.lengths[self.start :], dtype=np.int64))
        pos = np.searchsorted(self._cumsum, flat, side="right")
        before = np.where(pos > 0, self._cumsum[np.maximum(pos - 1, 0)], 0)
        keys = np.asarray(self.keys, dtype=np.int64)[self.start + pos]
        return keys, flat - before


class ReplayBuffer:
    """Per-task success/failure buffers over a shared, byte-bounded FIFO episode store."""

    def __init__(self, task_names: Sequence[str], config: ReplayConfig = ReplayConfig()):
        if len(task_names) == 0 or len(set(task_names)) != len(task_names):
            raise ValueError(f"task_names must be non-empty and unique, got {list(task_names)}")
        self.task_names = tuple(task_names)
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self._episodes: OrderedDict[int, _Entry] = OrderedDict()
        self._buffers = {
            (t, s): _Fifo() for t in range(len(task_names)) for s in (True, False, NEAR_MISS)
        }
        self._next_key = 0
        self._nbytes = 0
        self._num_transitions = 0
        self._image_shape: tuple[int, ...] | None = None
        self.evicted_episodes = 0

    # --- adding ---------------------------------------------------------------------------

    def _entry_bytes(self, episode: Episode, refs: int) -> int:
        return episode.nbytes + EPISODE_OVERHEAD_BYTES + refs * REFERENCE_OVERHEAD_BYTES

    def add(self, episode: Episode, relabels: Sequence[Relabel]) -> int:
        """Store an episode under its relabelled (task, outcome) buffers; returns the number
        of old episodes evicted to stay within the budget. Episodes without relabels are not
        stored."""
        if not relabels:
            return 0
        if self._image_shape is None:
            self._image_shape = episode.image_shape
        elif episode.image_shape != self._image_shape:
            raise ValueError(
                f"episode {episode.episode_id!r}: images are {episode.image_shape}, the buffer "
                f"holds {self._image_shape}"
            )
        refs: list[tuple[int, bool]] = []
        for r in relabels:
            if r.task not in self.task_names:
                raise KeyError(f"relabel for unknown task {r.task!r}")
            ref = (self.task_names.index(r.task), bool(r.success))
            if ref[0] in (t for t, _ in refs):
                raise ValueError(
                    f"episode {episode.episode_id!r}: task {r.task!r} relabelled twice"
                )
            refs.append(ref)
        # A failure of an episode that succeeded at another of its tasks is also a near miss
        # (indexed for the sampler that draws them).
        if self.config.sampler == "rebalanced_near_miss" and any(s for _, s in refs):
            refs += [(t, NEAR_MISS) for t, success in refs if not success]
        size = self._entry_bytes(episode, len(refs))
        if size > self.config.memory_budget_bytes:
            raise ValueError(
                f"episode {episode.episode_id!r} needs {size} bytes, more than the whole "
                f"replay budget of {self.config.memory_budget_bytes} bytes"
            )
        evicted = 0
        while self._nbytes + size > self.config.memory_budget_bytes:
            self._evict_oldest()
            evicted += 1
        key = self._next_key
        self._next_key += 1
        entry = _Entry(episode)
        entry.refs = refs
        self._episodes[key] = entry
        for ref in refs:
            self._buffers[ref].append(key, episode.num_steps)
        self._nbytes += size
        self._num_transitions += episode.num_steps
        return evicted

    def add_episode(
        self,
        episode: Episode,
        impersonation: Impersonation,
        rng: np.random.Generator | None = None,
    ) -> list[Relabel]:
        """Relabel an episode with `impersonation` (from `episode.labels`) and store it.
        Returns the relabels used."""
        relabels = impersonation(episode.task, episode.labels, rng)
        self.add(episode, relabels)
        return relabels

    def _evict_oldest(self) -> None:
        key, entry = self._episodes.popitem(last=False)
        for ref in entry.refs:
            self._buffers[ref].popleft(key)
        self._nbytes -= self._entry_bytes(entry.episode, len(entry.refs))
        self._num_transitions -= entry.episode.num_steps
        self.evicted_episodes += 1

    # --- sizes ------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes counted against the budget."""
        return self._nbytes

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_transitions(self) -> int:
        """Distinct stored transitions (each episode counted once)."""
        return self._num_transitions

    @property
    def num_relabelled_transitions(self) -> int:
        """Transitions over all (task, outcome) buffers (an episode counts once per relabel)."""
        return sum(b.transitions for (_, s), b in self._buffers.items() if s != NEAR_MISS)

    def buffer_sizes(self) -> dict[str, dict[str, int]]:
        """Per task: episodes and transitions in its success and failure buffers."""
        out = {}
        for t, name in enumerate(self.task_names):
            s, f = self._buffers[(t, True)], self._buffers[(t, False)]
            out[name] = {
                "success_episodes": len(s),
                "failure_episodes": len(f),
                "success_transitions": s.transitions,
                "failure_transitions": f.transitions,
                "near_miss_episodes": len(self._buffers[(t, NEAR_MISS)]),
            }
        return out

    # --- sampling ---------------------------------------------------------------------------

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> Batch:
        """Sample a batch with the configured sampler (rng defaults to the buffer's own)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = self.rng if rng is None else rng
        if not self._episodes:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.config.sampler != "uniform":
            refs = self._choose_rebalanced(batch_size, rng)
        else:
            refs = self._choose_uniform(batch_size, rng)
        return self._gather(refs, rng)

    def _choose_rebalanced(self, n: int, rng: np.random.Generator) -> list[tuple[int, bool | str]]:
        tasks = [
            t for t in range(len(self.task_names))
            if self._buffers[(t, True)].transitions or self._buffers[(t, False)].transitions
        ]  # fmt: skip
        chosen_tasks = np.asarray(tasks)[rng.integers(len(tasks), size=n)]
        want_success = rng.random(n) < 0.5
        near_misses = self.config.sampler == "rebalanced_near_miss"
        # Drawn for every row (used by failure rows only); never drawn by `rebalanced`, whose
        # random stream stays what it was.
        want_near = rng.random(n) < 0.5 if near_misses else np.zeros(n, bool)
        refs: list[tuple[int, bool | str]] = []
        for t, s, near in zip(
            chosen_tasks.tolist(), want_success.tolist(), want_near.tolist(), strict=True
        ):
            if self._buffers[(t, s)].transitions == 0:
                s = not s
            if not s and near and self._buffers[(t, NEAR_MISS)].transitions:
                refs.append((t, NEAR_MISS))
            else:
                refs.append((t, s))
        return refs

    def _choose_uniform(self, n: int, rng: np.random.Generator) -> list[tuple[int, bool]]:
        keys = [k for k in self._buffers if k[1] != NEAR_MISS]
        counts = np.asarray([self._buffers[k].transitions for k in keys], dtype=np.int64)
        picks = np.searchsorted(np.cumsum(counts), rng.integers(counts.sum(), size=n), "right")
        return [keys[i] for i in picks.tolist()]

    def _gather(self, refs: list[tuple[int, bool | str]], rng: np.random.Generator) -> Batch:
        n = len(refs)
        shape = self._image_shape
        image = np.empty((n, *shape), dtype=np.uint8)
        next_image = np.empty((n, *shape), dtype=np.uint8)
        grip = np.empty(n, np.float32)
        next_grip = np.empty(n, np.float32)
        detected = np.empty(n, np.float32)
        next_detected = np.empty(n, np.float32)
        height = np.empty(n, np.float32)
        next_height = np.empty(n, np.float32)
        action = np.empty((n, 6), np.float32)
        task = np.empty(n, np.int64)
        reward = np.zeros(n, np.float32)
        done = np.zeros(n, np.float32)
        truncated = np.zeros(n, np.float32)
        step = np.empty(n, np.int64)
        steps_left = np.empty(n, np.int64)
        success = np.zeros(n, np.float32)
        # Group rows by buffer so each buffer locates its transitions in one vectorized call.
        groups: dict[tuple[int, bool | str], list[int]] = {}
        for row, ref in enumerate(refs):
            groups.setdefault(ref, []).append(row)
        for ref, rows in groups.items():
            buf = self._buffers[ref]
            won = ref[1] is True  # a near miss is a failure of its task
            keys, steps = buf.locate(rng.integers(buf.transitions, size=len(rows)))
            for row, key, t in zip(rows, keys.tolist(), steps.tolist(), strict=True):
                ep = self._episodes[key].episode
                if ref[1] == NEAR_MISS:
                    t = ep.num_steps - 1
                image[row] = ep.images[t]
                next_image[row] = ep.images[t + 1]
                grip[row] = ep.gripper_closed[t]
                next_grip[row] = ep.gripper_closed[t + 1]
                detected[row] = ep.object_detected[t]
                next_detected[row] = ep.object_detected[t + 1]
                height[row] = ep.height[t]
                next_height[row] = ep.height[t + 1]
                action[row] = ep.actions[t]
                task[row] = ref[0]
                success[row] = float(won)
                last = t == ep.num_steps - 1
                done[row] = float(last)
                truncated[row] = float(last and not ep.terminated)
                step[row] = t
                steps_left[row] = ep.num_steps - 1 - t
                reward[row] = float(last and won)
        return Batch(
            image=image,
            gripper_closed=grip,
            height=height,
            action=action,
            task=task,
            reward=reward,
            done=done,
            next_image=next_image,
            next_gripper_closed=next_grip,
            next_height=next_height,
            episode_success=success,
            object_detected=detected,
            next_object_detected=next_detected,
            truncated=truncated,
            step=step,
            steps_left=steps_left,
        )
