"""The collector decides on the logger's replies by their outcome code, not their wording.

A real CollectorNode calls a scripted stand-in for the logger's `logger/start` and
`logger/finish` services (same process, real DDS). The stand-in's messages say nothing the
collector could match on, or mislead on purpose: only the codes carry the decision. The
collector records as its node name and finishes (or discards) only with the token the start
of that recording returned.
"""

from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_interfaces.srv import FinishEpisode, StartEpisode
from mtopt_policy.collector import CollectorError, EpisodeResult, EpisodeSummary
from mtopt_policy.collector_node import CollectorNode

pytestmark = pytest.mark.ros

NAMESPACE = "/outcome_cell"
TIMEOUT_S = 1.0
START = StartEpisode.Response
FINISH = FinishEpisode.Response


class ScriptedLogger(Node):
    """Answers each call with the next scripted response; records the requests."""

    def __init__(self, context):
        super().__init__("logger", namespace=NAMESPACE, context=context)
        self.start_replies: list[StartEpisode.Response] = []
        self.finish_replies: list[tuple[float, FinishEpisode.Response]] = []  # (delay, reply)
        self.starts: list[str] = []
        self.requesters: list[str] = []
        self.finishes: list[bool] = []  # the discard flag of each finish request
        self.finish_requests: list[tuple[str, str]] = []  # (info.episode_id, token)
        group = ReentrantCallbackGroup()
        self.create_service(StartEpisode, "logger/start", self._on_start, callback_group=group)
        self.create_service(FinishEpisode, "logger/finish", self._on_finish, callback_group=group)

    def _on_start(self, request, response):
        self.starts.append(request.episode_id)
        self.requesters.append(request.requester)
        return self.start_replies.pop(0)

    def _on_finish(self, request, response):
        self.finishes.append(request.discard)
        self.finish_requests.append((request.info.episode_id, request.token))
        delay, reply = self.finish_replies.pop(0)
        time.sleep(delay)  # longer than the collector's timeout: its reply is lost
        return reply


@pytest.fixture
def cell():
    context = rclpy.Context()
    rclpy.init(context=context)
    logger = ScriptedLogger(context)
    overrides = [
        Parameter("service_timeout_s", value=TIMEOUT_S),
        Parameter("call_retries", value=1),
        Parameter("use_oracle", value=False),
    ]
    collector = CollectorNode(namespace=NAMESPACE, context=context, parameter_overrides=overrides)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(logger)
    executor.add_node(collector)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert collector.start_client.wait_for_service(timeout_sec=20)
        assert collector.finish_client.wait_for_service(timeout_sec=20)
        yield collector, logger
    finally:
        collector.stop()
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        collector.destroy_node()
        logger.destroy_node()
        rclpy.try_shutdown(context=context)


def _start(
    outcome: int, recording: str = "", message: str = "", token: str = ""
) -> StartEpisode.Response:
    return START(ok=outcome == START.OK, outcome=outcome, recording_episode_id=recording,
                 message=message, token=token)  # fmt: skip


def _finish(outcome: int, message: str = "", bag_path: str = "") -> FinishEpisode.Response:
    return FINISH(ok=outcome == FINISH.OK, outcome=outcome, message=message, bag_path=bag_path)


def _summary(episode_id: str) -> EpisodeSummary:
    return EpisodeSummary(episode_id, 0, "lift-any", 1.0, 2.0, EpisodeResult(steps=1), ())


def _started(collector, logger, episode_id: str, token: str) -> None:
    logger.start_replies = [_start(START.OK, recording=episode_id, token=token)]
    collector.start_logging(episode_id, "lift-any")


def test_it_records_as_its_node_name_and_finishes_with_the_token(cell):
    collector, logger = cell
    _started(collector, logger, "ep-1", "t-1")
    assert logger.requesters == [f"{NAMESPACE}/collector"]
    logger.finish_replies = [(0.0, _finish(FINISH.OK, bag_path="/bags/ep-1"))]
    assert collector.finish_logging(_summary("ep-1")) == "/bags/ep-1"
    assert logger.finish_requests == [("ep-1", "t-1")] and logger.finishes == [False]


def test_its_own_id_recording_without_a_token_for_it_is_a_refusal(cell):
    collector, logger = cell
    # A real logger answers a repeated start of this collector's episode with OK and the same
    # token; ALREADY_RECORDING naming the very id means someone else records it.
    logger.start_replies = [_start(START.ALREADY_RECORDING, recording="ep-1", message="busy")]
    with pytest.raises(CollectorError, match="no token for it"):
        collector.start_logging("ep-1", "lift-any")
    assert logger.starts == ["ep-1"] and logger.finishes == []


def test_its_own_older_recording_is_discarded_with_its_token_then_started_again(cell):
    collector, logger = cell
    logger.start_replies = [
        _start(START.ALREADY_RECORDING, recording="old-run", message="busy"),
        _start(START.OK, recording="old-run", token="t-old"),  # recorded for its node name
        _start(START.OK, recording="ep-2", token="t-2"),
    ]
    logger.finish_replies = [(0.0, _finish(FINISH.OK))]
    collector.start_logging("ep-2", "lift-any")
    assert logger.starts == ["ep-2", "old-run", "ep-2"]
    assert logger.finishes == [True]  # one finish, with discard=true and the old token
    assert logger.finish_requests == [("old-run", "t-old")]


def test_another_requesters_recording_is_left_alone(cell):
    collector, logger = cell
    logger.start_replies = [
        _start(START.ALREADY_RECORDING, recording="theirs", message="busy"),
        _start(START.ALREADY_RECORDING, recording="theirs", message="busy"),
    ]
    with pytest.raises(CollectorError, match="cannot finish"):
        collector.start_logging("ep-2", "lift-any")
    assert logger.starts == ["ep-2", "theirs"] and logger.finishes == []


def test_any_other_refusal_stops_the_episode_whatever_the_message_says(cell):
    collector, logger = cell
    misleading = "episode 'ep-3' is still recording"  # the words, but not the code
    logger.start_replies = [_start(START.LOW_DISK, message=misleading)]
    with pytest.raises(CollectorError, match="logger/start refused"):
        collector.start_logging("ep-3", "lift-any")
    assert logger.starts == ["ep-3"] and logger.finishes == []


def test_finish_returns_the_bag_path_on_ok(cell):
    collector, logger = cell
    _started(collector, logger, "ep-4", "t-4")
    logger.finish_replies = [(0.0, _finish(FINISH.OK, bag_path="/bags/ep-4"))]
    assert collector.finish_logging(_summary("ep-4")) == "/bags/ep-4"


def test_not_recording_after_a_lost_finish_reply_says_the_bag_may_be_complete(cell):
    collector, logger = cell
    _started(collector, logger, "ep-5", "t-5")
    logger.finish_replies = [
        (TIMEOUT_S + 1.0, _finish(FINISH.OK, bag_path="/bags/ep-5")),  # reply too late
        (0.0, _finish(FINISH.NOT_RECORDING, message="nothing open")),
    ]
    with pytest.raises(CollectorError, match="earlier attempt got no reply"):
        collector.finish_logging(_summary("ep-5"))
    assert logger.finishes == [False, False]
    assert logger.finish_requests == [("ep-5", "t-5")] * 2


def test_not_recording_without_a_lost_reply_is_a_refusal(cell):
    collector, logger = cell
    _started(collector, logger, "ep-6", "t-6")
    logger.finish_replies = [(0.0, _finish(FINISH.NOT_RECORDING, message="nothing open"))]
    with pytest.raises(CollectorError, match="logger/finish refused: nothing open"):
        collector.finish_logging(_summary("ep-6"))
