"""EpisodeRecorder (the logger's logic, no node): subsampling grid, final frames, refusals,
who may finish an episode (token, closed_by), which episode ids are accepted, and which `.part`
leftovers a restarted logger deletes."""

import numpy as np
import pytest
from rclpy.serialization import serialize_message

from mtopt_bridge.image import numpy_to_image
from mtopt_core.episode_bag import PART_SUFFIX, list_episode_bags, read_bag_messages
from mtopt_core.episodes import RESERVED_SUFFIX, check_episode_id, episode_cell, valid_episode_id
from mtopt_interfaces.msg import EpisodeInfo
from mtopt_logger.config import ConfigError, LoggerConfig, own_cell
from mtopt_logger.recorder import EpisodeRecorder, Outcome, RecorderError, find_stale_parts

CAMERA = "/c/camera/overhead/image_raw"
INFO = "/c/episode_info"
MS = 1_000_000
ME = "/c/collector"


def _info(episode_id: str, **fields) -> bytes:
    return serialize_message(EpisodeInfo(episode_id=episode_id, **fields))


def _frame(value: int) -> bytes:
    return serialize_message(numpy_to_image(np.full((2, 2, 3), value % 256, np.uint8)))


def test_camera_frames_follow_a_rate_grid_and_the_newest_is_kept_at_finish(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    token = recorder.start("e", ME).token
    # 30 Hz for 1 s (frames 0..29), then a 1 s pause, then two more frames.
    arrivals = [round(i * 1000 / 30) * MS for i in range(30)] + [2000 * MS, 2040 * MS]
    kept = [i for i, t in enumerate(arrivals) if recorder.record_camera(CAMERA, t, _frame(i))]
    # Grid at 0, 200, 400, ... ms: the first frame at or after each grid point; after the
    # pause the grid restarts at the frame at 2000 ms.
    assert kept == [0, 6, 12, 18, 24, 30]
    finished = recorder.finish(INFO, _info("e", steps=3), 1500 * MS, token)
    assert finished.path == tmp_path / "e" and finished.message_counts[CAMERA] == 7
    messages = list(read_bag_messages(finished.path))
    values = [int(m.message.data[0]) for m in messages if m.topic == CAMERA]
    assert values == [0, 6, 12, 18, 24, 30, 31]  # 31: the newest frame, written at finish
    # The EpisodeInfo is stamped after everything else although finish was given 1500 ms.
    assert messages[-1].topic == INFO and messages[-1].message.steps == 3
    assert messages[-1].timestamp_ns > 2040 * MS


def test_refusals_and_discard(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    with pytest.raises(RecorderError, match="no episode is recording") as refused:
        recorder.finish(INFO, _info("a"), 0, "")
    assert refused.value.outcome is Outcome.NOT_RECORDING
    assert not recorder.record("/t", "sensor_msgs/msg/Image", 1, _frame(1))  # not recording
    started = recorder.start("a", ME)
    part = started.part_path
    assert part == tmp_path / "a.part" and part.is_dir()
    with pytest.raises(RecorderError, match="'a' is still recording") as refused:
        recorder.start("b", ME)
    assert refused.value.outcome is Outcome.ALREADY_RECORDING
    with pytest.raises(RecorderError, match="'a' is still recording"):
        recorder.start("a", "/c/someone_else")  # the same id, but not the same requester
    assert recorder.record("/t", "sensor_msgs/msg/Image", 1, _frame(1))
    assert find_stale_parts(tmp_path) == [part]
    finished = recorder.finish(INFO, _info("a"), 2, started.token, discard=True)
    assert finished.path is None and not part.exists() and list_episode_bags(tmp_path) == []
    with pytest.raises(RecorderError, match="invalid episode id") as refused:
        recorder.start("x/y", ME)
    assert refused.value.outcome is Outcome.BAD_REQUEST
    greedy = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=1e12)
    with pytest.raises(
        RecorderError, match=r"free disk \d+\.\d\d GB .* below min_free_disk_gb"
    ) as refused:
        greedy.start("c", ME)
    assert refused.value.outcome is Outcome.LOW_DISK


def test_an_id_already_used_is_a_bad_request_and_a_failed_write_is_reported(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    token = recorder.start("a", ME).token
    assert recorder.finish(INFO, _info("a"), 1, token).path == tmp_path / "a"
    with pytest.raises(RecorderError, match="exists already") as refused:
        recorder.start("a", ME)
    assert refused.value.outcome is Outcome.BAD_REQUEST
    # A file where the episode directory should be: the bag cannot be created.
    blocked = EpisodeRecorder(tmp_path / "a" / "metadata.yaml", 5.0, min_free_disk_gb=0.0)
    with pytest.raises(RecorderError, match="cannot start episode 'b'") as refused:
        blocked.start("b", ME)
    assert refused.value.outcome is Outcome.WRITE_FAILED


def test_config_validation_names_the_parameter():
    LoggerConfig().validate()
    with pytest.raises(ConfigError, match="camera_rate_hz"):
        LoggerConfig(camera_rate_hz=0.0).validate()
    with pytest.raises(ConfigError, match="topic_types"):
        LoggerConfig(topics=("a",), topic_types=("sensor_msgs/Image",)).validate()
    with pytest.raises(ConfigError, match="same length"):
        LoggerConfig(topics=("a", "b"), topic_types=("sensor_msgs/msg/Image",)).validate()
    with pytest.raises(ConfigError, match="recorded twice"):
        LoggerConfig(
            topics=("camera/overhead/image_raw",), topic_types=("sensor_msgs/msg/Image",)
        ).validate()


def _bag_infos(path):
    return [m.message for m in read_bag_messages(path) if m.topic == INFO]


def test_finish_needs_the_recording_episode_and_its_token(tmp_path):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    started = recorder.start("ep-1", ME)
    assert len(started.token) == 32 and int(started.token, 16) >= 0  # secrets.token_hex(16)
    again = recorder.start("ep-1", ME)  # the collector's retry after a lost reply
    assert again.token == started.token and again.part_path == started.part_path
    assert recorder.record("/t", "sensor_msgs/msg/Image", 1, _frame(1))
    forged = _info("", task_names=["lift-any"], sd_probabilities=[1.0])
    refusals = [
        (forged, started.token, "is not the recording episode"),  # empty id
        (_info("ep-0"), started.token, "is not the recording episode"),  # another id
        (_info("ep-1"), "", "no token"),
        (_info("ep-1"), "0" * 32, "wrong token"),
        (b"\x00\x01", started.token, "not a serialized EpisodeInfo"),
    ]
    for info, token, reason in refusals:
        for discard in (False, True):
            with pytest.raises(RecorderError, match=reason) as refused:
                recorder.finish(INFO, info, 2, token, discard=discard)
            assert refused.value.outcome is Outcome.BAD_REQUEST
            assert "nothing changed" in str(refused.value)
    # Nothing changed: the bag still records, and no other bag appeared.
    assert recorder.episode_id == "ep-1" and started.part_path.is_dir()
    assert recorder.record("/t", "sensor_msgs/msg/Image", 3, _frame(3))
    assert list_episode_bags(tmp_path) == []
    # The recording's own finish: closed_by is the requester, whatever the caller wrote.
    info = _info("ep-1", steps=2, closed_by="/c/intruder")
    finished = recorder.finish(INFO, info, 4, started.token)
    assert finished.message_counts == {"/t": 2, INFO: 1}
    (stored,) = _bag_infos(finished.path)
    assert (stored.episode_id, stored.steps, stored.closed_by) == ("ep-1", 2, ME)
    with pytest.raises(RecorderError) as refused:  # the token ends with its episode
        recorder.finish(INFO, _info("ep-1"), 5, started.token)
    assert refused.value.outcome is Outcome.NOT_RECORDING
    # Each recording has its own token.
    second = recorder.start("ep-2", "mtopt-sim-collect")
    assert second.token != started.token
    with pytest.raises(RecorderError, match="wrong token"):
        recorder.finish(INFO, _info("ep-2"), 6, started.token)
    (stored,) = _bag_infos(recorder.finish(INFO, _info("ep-2"), 7, second.token).path)
    assert stored.closed_by == "mtopt-sim-collect"


@pytest.mark.parametrize("requester", ["", "   ", "bad\nname", "x" * 257])
def test_start_needs_a_requester(tmp_path, requester):
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    with pytest.raises(RecorderError, match="requester") as refused:
        recorder.start("ep-1", requester)
    assert refused.value.outcome is Outcome.BAD_REQUEST
    assert recorder.episode_id is None and not any(tmp_path.iterdir())


BAD_IDS = [
    "",
    "ep\n1",
    "ep1\n",  # `$` of a regular expression would match before this newline
    "-rf",
    ".hidden",
    "_x",
    "a..b",
    "..",
    "a/b",
    "a\\b",
    "ep\x00",
    "ep\x1b[31m",
    "ep\t1",
    "ep 1",
    "ép",
    "ep;rm",
    "ep$x",
    "x" * 129,
    "ep" + PART_SUFFIX,
]


@pytest.mark.parametrize("episode_id", BAD_IDS, ids=repr)
def test_invalid_episode_ids_are_refused(tmp_path, episode_id):
    assert not valid_episode_id(episode_id)
    with pytest.raises(ValueError, match="invalid episode id"):
        check_episode_id(episode_id)
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    with pytest.raises(RecorderError, match="invalid episode id") as refused:
        recorder.start(episode_id, ME)
    assert refused.value.outcome is Outcome.BAD_REQUEST
    assert recorder.episode_id is None and not any(tmp_path.iterdir())


def test_valid_episode_ids(tmp_path):
    # The form of the collector's and bulk collection's ids, and other plain names.
    good = ["cell12_20231114T221320_3fa2_00001", "a", "ep-1", "ep_2.v3", "A" + "x" * 127,
            "0.1-b_c"]  # fmt: skip
    assert all(valid_episode_id(i) for i in good), good
    assert RESERVED_SUFFIX == PART_SUFFIX and not valid_episode_id(None)
    recorder = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    for episode_id in good[:2]:
        token = recorder.start(episode_id, ME).token
        assert recorder.finish(INFO, _info(episode_id), 1, token).path == tmp_path / episode_id


def test_a_restarted_logger_deletes_only_its_own_cells_leftovers(tmp_path):
    # A logger of cell 2 was killed mid-episode; cell 3's logger shares the directory and is
    # recording right now; cell 12 and an id without a cell left their own partial bags.
    killed = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    mine = killed.start("cell2_20260101T000000_ab12_00007", "/cell2/collector").part_path
    assert killed.record("/cell2/t", "sensor_msgs/msg/Image", 1, _frame(1))
    neighbour = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    live = neighbour.start("cell3_20260101T000000_cd34_00001", "/cell3/collector")
    assert neighbour.record("/cell3/t", "sensor_msgs/msg/Image", 1, _frame(1))
    others = [tmp_path / "cell12_20260101T000000_ef56_00001.part", tmp_path / "ep9.part"]
    for part in others:
        part.mkdir()
    assert [episode_cell(p.name) for p in (mine, live.part_path, *others)] == [2, 3, 12, None]

    restarted = EpisodeRecorder(tmp_path, camera_rate_hz=5.0, min_free_disk_gb=0.0)
    assert restarted.remove_stale_parts([2]) == [mine] and not mine.exists()
    assert restarted.stale_parts() == sorted([live.part_path, *others])
    assert restarted.remove_stale_parts([2]) == []  # nothing left of cell 2
    # The other cell's recording was not disturbed: it finishes into a complete bag.
    assert neighbour.record("/cell3/t", "sensor_msgs/msg/Image", 2, _frame(2))
    finished = neighbour.finish(INFO, _info(live.episode_id), 3, live.token)
    assert [m.timestamp_ns for m in read_bag_messages(finished.path)] == [1, 2, 3]
    # Never the recorder's own recording, not even when asked for every cell.
    own = restarted.start("cell2_20260101T000100_ab12_00001", "/cell2/collector")
    assert restarted.remove_stale_parts(None) == others and own.part_path.is_dir()
    assert restarted.stale_parts() == [] and list_episode_bags(tmp_path) == [finished.path]


def test_the_loggers_own_cell_is_its_parameter_or_its_namespace():
    assert own_cell(-1, "/cell7") == 7 and own_cell(-1, "/site/cell12") == 12
    assert own_cell(4, "/cell7") == 4  # the parameter wins
    assert own_cell(-1, "/") is None and own_cell(-1, "/cell7/sub") is None
    assert own_cell(-1, "/mycell7") is None and own_cell(-1, "/cellx") is None
    with pytest.raises(ConfigError, match="cell_id"):
        LoggerConfig(cell_id=-2).validate()
