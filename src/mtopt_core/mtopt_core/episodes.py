"""Episode ids and episode closers: the one definition every package checks against.

An episode id names the episode's bag directory (`<episode_dir>/<id>/`, `<id>.part/` while it
records), so it must be a safe, portable file name whoever made it up. One conservative rule,
checked by the logger (`logger/start` refuses other ids) and met by every id maker (the
collector's `make_episode_id_factory`, bulk simulated collection):

* 1 to 128 characters from `A-Z a-z 0-9 _ . -`, the first a letter or digit (so no leading
  `-` that a command line would read as an option, no leading `.` that hides the directory);
* no `..` anywhere, and not ending in `.part` (the suffix of bags still being written).

So no `/`, no whitespace, newlines or other control characters, no shell metacharacters.

The id makers name a cell's episodes `cell<k>_...` (k = the cell id): `episode_cell` reads k
back, so a cell's own leftovers can be told from another cell's in a shared directory.

A closer is who started and finished an episode's recording; the logger writes it into
`EpisodeInfo.closed_by` and the learner ingests only bags of accepted closers.
`SIM_COLLECT_CLOSER` is the closer of bulk simulated collection (`mtopt-sim-collect`), which
writes its bags without the ROS logger; ROS collectors are named by their node's fully
qualified name (e.g. `/cell0/collector`).
"""

from __future__ import annotations

import re

#: The episode id rule as a regular expression (use `valid_episode_id`: it also refuses `..`
#: and the `.part` suffix). Anchored with \Z, so a trailing newline does not match.
EPISODE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z"
EPISODE_ID_MAX_LENGTH = 128
#: The suffix of a bag directory still being written (`mtopt_core.episode_bag.PART_SUFFIX`).
RESERVED_SUFFIX = ".part"
#: `EpisodeInfo.closed_by` of the bags `mtopt-sim-collect` writes.
SIM_COLLECT_CLOSER = "mtopt-sim-collect"

_EPISODE_ID = re.compile(EPISODE_ID_PATTERN)
_CELL_PREFIX = re.compile(r"cell(\d+)_")


def episode_id_problem(episode_id: object) -> str:
    """Why `episode_id` is not a valid episode id ("" when it is); for error messages."""
    if not isinstance(episode_id, str):
        return f"must be a string, got {type(episode_id).__name__}"
    if not episode_id:
        return "must not be empty"
    if len(episode_id) > EPISODE_ID_MAX_LENGTH:
        return f"is {len(episode_id)} characters long (at most {EPISODE_ID_MAX_LENGTH})"
    if not _EPISODE_ID.match(episode_id):
        return (
            "must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
        )
    if ".." in episode_id:
        return "must not contain '..'"
    if episode_id.endswith(RESERVED_SUFFIX):
        return f"must not end with {RESERVED_SUFFIX!r} (bags still being written end so)"
    return ""


def valid_episode_id(episode_id: object) -> bool:
    """True when `episode_id` follows the episode id rule (see the module docstring)."""
    return not episode_id_problem(episode_id)


def check_episode_id(episode_id: object) -> str:
    """Return `episode_id`, or raise ValueError saying why it is not a valid episode id."""
    problem = episode_id_problem(episode_id)
    if problem:
        raise ValueError(f"invalid episode id {episode_id!r}: {problem}")
    return episode_id


def episode_cell(name: str) -> int | None:
    """The cell k of an episode id or bag directory name `cell<k>_...` (the collector's and
    bulk collection's naming), else None."""
    match = _CELL_PREFIX.match(name)
    return int(match.group(1)) if match else None
