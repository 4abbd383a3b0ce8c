"""The demo's view of an episode: its EpisodeInfo record (read from the bag), who acted, and
the simulator oracle's verdict."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader

from mtopt_core.episode_bag import list_episode_bags, make_typestore

EPISODE_INFO_TYPE = "mtopt_interfaces/msg/EpisodeInfo"
LIFT_TASK = "lift-any"

#: Report columns of the stages' policies (stage 1 before any weights, stage 3 with them).
STAGE1_SCRIPTED = "stage 1 scripted"
STAGE1_RANDOM = "stage 1 random"
STAGE3_LEARNED = "stage 3 learned CEM"


def policy_group(info: Any, stage: int) -> str:
    """The report column of an episode: who acted, in which stage."""
    kind = str(info.policy_kind)
    if kind.startswith("scripted"):
        return f"stage {stage} scripted"
    if kind == "cem" and int(info.weights_version) >= 0:
        return f"stage {stage} learned CEM"
    return f"stage {stage} {kind or 'unknown'}"


def oracle_success(info: Any, task: str | None = None) -> bool | None:
    """Oracle success of `task` (default: the commanded one) in an episode; None = ungraded."""
    task = info.task if task is None else task
    names = list(info.task_names)
    if not info.has_oracle or task not in names or len(info.oracle_success) != len(names):
        return None
    return bool(info.oracle_success[names.index(task)])


def episode_order(infos: Iterable[Any]) -> list[Any]:
    """Episodes in the order they ran (start time, then id)."""
    return sorted(infos, key=lambda i: (i.start_time.sec, i.start_time.nanosec, str(i.episode_id)))


class InfoReader:
    """EpisodeInfo of every complete bag of a directory, read once each (only that record), so
    a growing directory can be polled while a stage runs."""

    def __init__(self, episode_dir: Path):
        self.episode_dir = Path(episode_dir)
        self.store = make_typestore()
        self.infos: dict[str, Any] = {}
        self.problems: dict[str, str] = {}

    def poll(self) -> list[Any]:
        """Read the bags not read yet; returns all infos so far (in name order)."""
        for bag in list_episode_bags(self.episode_dir):
            if bag.name in self.infos or bag.name in self.problems:
                continue
            try:
                self.infos[bag.name] = self._read(bag)
            except Exception as exc:
                self.problems[bag.name] = f"{bag}: {exc}"
        return [self.infos[k] for k in sorted(self.infos)]

    def _read(self, bag: Path) -> Any:
        with Reader(bag) as reader:
            wanted = [c for c in reader.connections if c.msgtype == EPISODE_INFO_TYPE]
            found = [
                self.store.deserialize_cdr(raw, c.msgtype)
                for c, _, raw in reader.messages(connections=wanted)
            ]
        if len(found) != 1:
            raise ValueError(f"{len(found)} EpisodeInfo records, expected 1")
        return found[0]
