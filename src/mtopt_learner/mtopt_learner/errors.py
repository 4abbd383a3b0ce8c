"""The learner's user-facing errors and the messages `mtopt-learn` and `learner_node` share."""

from __future__ import annotations

from pathlib import Path


class LearnError(RuntimeError):
    """A problem the user has to fix (the message says what)."""


def no_bags_message(bag_dir: Path | str) -> str:
    """A bag directory without a single complete episode bag."""
    return f"no complete episode bags in {bag_dir}"


def no_usable_episodes_message(
    bag_dir: Path | str, skipped: int, quarantined: int, labels: str
) -> str:
    """Every bag of a directory was skipped or quarantined (e.g. ungraded bags with sd labels).

    The skip and quarantine reasons were logged just before ("see above").
    """
    return (
        f"no usable episodes in {bag_dir}: {skipped} skipped, {quarantined} quarantined"
        f" (see above; --labels is {labels!r})"
    )
