"""Episode integrity on the collector's side (plain classes, no DDS): an episode during which
the reset bin moved (its angle, or a reset goal the collector did not send) is logged as
aborted; the collector finishes a recording only with the token its start returned, through
the logger's own recorder, which writes the collector's name as closed_by."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import serialize_message

from mtopt_core.episode_bag import read_bag_messages
from mtopt_core.episodes import valid_episode_id
from mtopt_core.tasks import load_task_registry
from mtopt_logger.recorder import EpisodeRecorder, Outcome, RecorderError
from mtopt_policy.collector import (
    BinWatch,
    CollectorError,
    CollectorLoop,
    EpisodeResult,
    EpisodeSummary,
    Grade,
    LoggerClient,
    LoggerReply,
    LostReply,
    make_episode_id_factory,
)
from mtopt_policy.collector_node import episode_info_msg
from mtopt_policy.config import CollectorConfig

ME = "/cell3/collector"
OWN_GOAL, FOREIGN_GOAL = b"\x01" * 16, b"\x02" * 16


@pytest.fixture(scope="module")
def registry():
    return load_task_registry()


class Port:
    """A cell that works; `during_episode(watch)` runs while the policy acts."""

    def __init__(self, registry, watch: BinWatch, during_episode=lambda watch: None):
        self.names, self.watch, self.during_episode = registry.names, watch, during_episode
        self.summaries: list[EpisodeSummary] = []
        self.logs: list[tuple[str, str]] = []

    def run_episode(self, episode_id, task):
        self.during_episode(self.watch)
        return EpisodeResult(steps=3, terminated=True, policy_kind="scripted_pick")

    def grade(self, images):
        return Grade([0.9] * len(self.names), "sd-v1")

    def finish_logging(self, summary):
        self.summaries.append(summary)
        return f"/bags/{summary.episode_id}"

    def final_images(self, after):
        return {"overhead": 1, "left_shoulder": 2, "right_shoulder": 3}, ""

    def log(self, level, message):
        self.logs.append((level, message))

    def ok(self):
        return True

    def sd_available(self):
        return True

    def sleep(self, seconds):
        return True

    def missing_inputs(self):
        return []

    def oracle(self, after):
        return None

    def gripper_holding(self):
        return None

    def respawn(self):
        return False

    def start_logging(self, episode_id, task):
        pass

    def present(self):
        pass

    def go_home(self):
        pass

    def reset_bin(self):
        pass

    def publish_status(self, snapshot):
        pass

    def publish_timing(self, timing):
        pass


def _run(registry, during_episode, before=lambda watch: None) -> EpisodeSummary:
    watch = BinWatch()
    before(watch)
    port = Port(registry, watch, during_episode)
    cfg = CollectorConfig(seed=0, cell_id=3)
    loop = CollectorLoop(cfg, registry, port, np.random.default_rng(0), bin_watch=watch)
    summary = loop.run_one()
    assert port.summaries == [summary]  # logged either way: aborted, with the reason
    assert loop.stats.aborted == int(summary.result.aborted)
    return summary


def _level(watch: BinWatch) -> None:
    watch.on_angle(0.01)


def test_an_episode_during_which_the_bin_moved_is_logged_as_aborted(registry):
    def tilted(watch):  # somebody sent reset_bin/reset: the bin tilts under the arm
        for angle in (0.012, 0.3, 1.2, 2.6):
            watch.on_angle(angle)

    summary = _run(registry, tilted, before=_level)
    assert summary.result.aborted and summary.result.steps == 3
    assert summary.result.reason.startswith("bin moved during the episode: hinge angle 0.300")
    assert summary.grade is not None  # still graded and logged, as an aborted episode
    info = episode_info_msg(summary)
    assert info.aborted and info.abort_reason.startswith("bin moved during the episode")

    def jitter(watch):  # within the tolerance: the motor holding the bin level
        for angle in (0.02, 0.0, 0.04, -0.01):
            watch.on_angle(angle)

    assert not _run(registry, jitter, before=_level).result.aborted
    assert not _run(registry, lambda watch: None).result.aborted  # no bin state at all


def test_a_reset_goal_the_collector_did_not_send_aborts_the_episode(registry):
    def foreign(watch):
        watch.on_active_goals([FOREIGN_GOAL])
        watch.on_active_goals([])  # over before the bin moved measurably

    summary = _run(registry, foreign, before=_level)
    assert summary.result.aborted and "goal ran that this collector did not send" in (
        summary.result.reason
    )

    def own(watch):  # its own goal, still listed as executing: not foreign
        watch.on_active_goals([OWN_GOAL])

    assert not _run(registry, own, before=lambda w: w.own_goal(OWN_GOAL)).result.aborted
    # A foreign goal already running when the episode starts counts as well.
    running = _run(registry, lambda watch: None, before=lambda w: w.on_active_goals([b"\x03"]))
    assert running.result.aborted


def test_bin_watch_compares_with_the_angle_at_the_start():
    watch = BinWatch(tolerance_rad=0.05)
    watch.on_angle(1.0)  # moved before the episode: not this episode's business
    watch.begin()
    watch.on_angle(1.04)
    assert watch.end() == ""
    watch.on_angle(0.0)  # between episodes: ignored
    watch.begin()
    watch.on_angle(float("nan"))
    watch.on_angle(0.2)
    problem = watch.end()
    assert "0.200 rad" in problem and "from 0.000 rad" in problem
    assert watch.end() == ""  # reported once
    with pytest.raises(ValueError):
        BinWatch(tolerance_rad=0.0)


class RecorderLink:
    """The logger's services over the logger's own recorder (what logger_node does)."""

    def __init__(self, recorder: EpisodeRecorder):
        self.recorder = recorder
        self.starts: list[tuple[str, str]] = []
        self.finishes: list[tuple[str, str, bool]] = []

    def start(self, episode_id, task, requester):
        self.starts.append((episode_id, requester))
        try:
            recording = self.recorder.start(episode_id, requester)
        except RecorderError as exc:
            return LoggerReply(exc.outcome.name, str(exc), self.recorder.episode_id or "")
        return LoggerReply("OK", "", recording.episode_id, recording.token)

    def finish(self, summary, episode_id, token, discard):
        self.finishes.append((episode_id, token, discard))
        info = episode_info_msg(summary) if summary is not None else episode_info_msg(
            EpisodeSummary(episode_id, 3, "lift-any", 0.0, 0.0, EpisodeResult(), ())
        )  # fmt: skip
        info.episode_id = episode_id
        try:
            done = self.recorder.finish("/cell3/episode_info", serialize_message(info), 1, token,
                                        discard)  # fmt: skip
        except RecorderError as exc:
            return LoggerReply(exc.outcome.name, str(exc))
        return LoggerReply("OK", bag_path=str(done.path or ""))


def _summary(episode_id: str) -> EpisodeSummary:
    return EpisodeSummary(episode_id, 3, "lift-any", 1.0, 2.0, EpisodeResult(steps=1), ())


def test_the_collector_finishes_with_its_token_and_is_named_closed_by(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    link = RecorderLink(recorder)
    session = LoggerClient(link, ME, attempts=2)
    session.start("ep-1", "lift-any")
    token = recorder.recording.token
    assert session.token("ep-1") == token and link.starts == [("ep-1", ME)]
    # A stranger cannot finish it; the collector can.
    with pytest.raises(RecorderError) as refused:
        recorder.finish("/cell3/episode_info", serialize_message(episode_info_msg(
            _summary("ep-1"))), 1, "not-the-token")  # fmt: skip
    assert refused.value.outcome is Outcome.BAD_REQUEST and recorder.episode_id == "ep-1"
    bag = session.finish(_summary("ep-1"))
    assert link.finishes == [("ep-1", token, False)] and session.token("ep-1") == ""
    (info,) = [m.message for m in read_bag_messages(bag) if m.topic.endswith("episode_info")]
    assert info.closed_by == ME and info.episode_id == "ep-1"
    with pytest.raises(CollectorError, match="no token for episode 'ep-9'"):
        session.finish(_summary("ep-9"))


def test_an_older_recording_is_discarded_with_its_token_and_a_strangers_is_left_alone(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    # This collector's previous run died mid-episode: the logger still records for its name.
    LoggerClient(RecorderLink(recorder), ME, attempts=2).start("old-run", "lift-any")
    link = RecorderLink(recorder)
    warnings = []
    session = LoggerClient(link, ME, attempts=2, log=lambda level, m: warnings.append(m))
    session.start("ep-2", "lift-any")
    assert recorder.episode_id == "ep-2" and not (tmp_path / "old-run.part").exists()
    assert [s[0] for s in link.starts] == ["ep-2", "old-run", "ep-2"]
    assert [(e, d) for e, _, d in link.finishes] == [("old-run", True)]
    assert "discarding it" in warnings[0]
    # Its own earlier episode whose finish was never answered: discarded with the kept token.
    token = recorder.recording.token
    session.link = lost = RecorderLink(recorder)
    lost.finish = lambda *args: (_ for _ in ()).throw(LostReply("logger/finish: no reply"))
    with pytest.raises(CollectorError, match="gave up after 2 attempts"):
        session.finish(_summary("ep-2"))
    assert recorder.episode_id == "ep-2" and session.token("ep-2") == token
    session.link, link.starts = link, []
    session.start("ep-3", "lift-any")
    assert recorder.episode_id == "ep-3" and not (tmp_path / "ep-2.part").exists()
    assert link.starts == [("ep-3", ME), ("ep-3", ME)]  # no token to recover: it had it
    assert link.finishes[-1] == ("ep-2", token, True)
    # Another requester's recording: refused, and it keeps recording.
    other = LoggerClient(RecorderLink(recorder), "/cell3/other_tool", attempts=2)
    with pytest.raises(CollectorError, match="cannot finish"):
        other.start("ep-4", "lift-any")
    assert recorder.episode_id == "ep-3"


def test_episode_ids_made_by_the_collector_follow_the_rule():
    made = make_episode_id_factory(12, clock=lambda: 1.7e9)
    ids = [made() for _ in range(3)]
    assert all(valid_episode_id(i) for i in ids) and len(set(ids)) == 3
    assert ids[0].startswith("cell12_20231114T221320_") and ids[0].endswith("_00001")


def test_a_rejected_goal_is_logged_aborted_and_the_collector_waits_before_the_next(registry):
    """A respawned collector's goals are refused while the policy still runs the goal of the
    collector that crashed: log each as aborted (nothing ran) and wait retry_period_s, instead
    of logging a burst of empty aborted episodes."""
    from mtopt_policy.collector import EpisodeRejected

    class Busy(Port):
        def __init__(self, *args):
            super().__init__(*args)
            self.slept: list[float] = []

        def run_episode(self, episode_id, task):
            raise EpisodeRejected("policy/run_episode: goal rejected")

        def sleep(self, seconds):
            self.slept.append(seconds)
            return True

    watch = BinWatch()
    port = Busy(registry, watch)
    cfg = CollectorConfig(seed=0, cell_id=3, retry_period_s=4.0)
    loop = CollectorLoop(cfg, registry, port, np.random.default_rng(0), bin_watch=watch)
    summary = loop.run_one()
    assert summary.result.aborted and "goal rejected" in summary.result.reason
    assert 4.0 in port.slept
