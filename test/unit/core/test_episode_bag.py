"""Episode bags: atomic .part -> final rename, MCAP + zstd, readable by rosbags and by mcap."""

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from mtopt_core.episode_bag import (
    EpisodeBagError,
    EpisodeBagWriter,
    list_episode_bags,
    make_typestore,
    read_bag_messages,
)

STORE = make_typestore()
T = STORE.types
INFO = "mtopt_interfaces/msg/EpisodeInfo"
STEP = "mtopt_interfaces/msg/PolicyStep"
IMAGE = "sensor_msgs/msg/Image"


def _header(ns):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""
    )


def _image(ns, rng):
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return T[IMAGE](
        header=_header(ns),
        height=8,
        width=8,
        encoding="rgb8",
        is_bigendian=0,
        step=24,
        data=pixels.reshape(-1),
    )


def _info(ns):
    return T[INFO](
        header=_header(ns),
        episode_id="ep1",
        cell_id=3,
        task="lift-carrot",
        start_time=_header(0).stamp,
        policy_kind="scripted_pick",
        weights_version=-1,
        weights_sha256="",
        epsilon=0.0,
        steps=2,
        terminated=True,
        aborted=False,
        abort_reason="",
        closed_by="/cell3/collector",
        task_names=["lift-any", "lift-carrot"],
        sd_probabilities=np.array([0.9, 0.8], np.float32),
        sd_model_version="sd-1",
        has_oracle=True,
        oracle_success=np.array([True, True]),
    )


def _write_episode(directory, episode_id="ep1"):
    rng = np.random.default_rng(0)
    with EpisodeBagWriter(directory, episode_id) as bag:
        assert bag.part_path.is_dir() and not bag.final_path.exists()
        for step in range(2):
            ns = (step + 1) * 10**8
            bag.write("/cell3/camera/overhead/image_raw", IMAGE, ns, _image(ns, rng))
            bag.write(
                "/cell3/policy/step",
                STEP,
                ns + 1,
                T[STEP](
                    header=_header(ns),
                    episode_id=episode_id,
                    step=step,
                    task="lift-carrot",
                    action=np.array([0.1, 0, -1, 0, step, step], np.float32),
                    q_value=np.nan,
                    exploratory=True,
                    policy_kind="scripted_pick",
                    gripper_closed=bool(step),
                    object_detected=False,
                    gripper_height=0.1,
                ),
            )
        bag.write("/cell3/episode_info", INFO, 3 * 10**8, _info(3 * 10**8))
        return bag.finish()


def test_write_then_read_with_rosbags(tmp_path):
    path = _write_episode(tmp_path)
    assert path == tmp_path / "ep1" and not (tmp_path / "ep1.part").exists()
    assert list_episode_bags(tmp_path) == [path]
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap" and metadata["message_count"] == 5
    messages = list(read_bag_messages(path))
    assert [m.topic.rsplit("/", 1)[-1] for m in messages] == [
        "image_raw",
        "step",
        "image_raw",
        "step",
        "episode_info",
    ]
    info = messages[-1].message
    assert (info.task, info.cell_id, info.steps) == ("lift-carrot", 3, 2)
    assert list(info.task_names) == ["lift-any", "lift-carrot"]
    np.testing.assert_allclose(info.sd_probabilities, [0.9, 0.8])
    only_steps = list(read_bag_messages(path, topics=["/cell3/policy/step"]))
    assert [m.message.step for m in only_steps] == [0, 1]


def test_chunks_are_zstd_and_mcap_library_decodes(tmp_path):
    path = _write_episode(tmp_path)
    (mcap_file,) = path.glob("*.mcap")
    with mcap_file.open("rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        decoded = {ch.topic: msg for _, ch, _, msg in reader.iter_decoded_messages()}
    assert decoded["/cell3/episode_info"].task == "lift-carrot"
    assert decoded["/cell3/camera/overhead/image_raw"].encoding == "rgb8"


def test_leaving_without_finish_discards(tmp_path):
    with EpisodeBagWriter(tmp_path, "ep2") as bag:
        bag.write("/x/episode_info", INFO, 1, _info(1))
    assert not (tmp_path / "ep2.part").exists() and not (tmp_path / "ep2").exists()
    assert list_episode_bags(tmp_path) == []


def test_part_bags_are_invisible_and_refused(tmp_path):
    bag = EpisodeBagWriter(tmp_path, "ep3")
    bag.write("/x/episode_info", INFO, 1, _info(1))
    assert list_episode_bags(tmp_path) == []
    with pytest.raises(EpisodeBagError, match="still being written"):
        list(read_bag_messages(bag.part_path))
    bag.discard()


def test_existing_episode_is_not_overwritten(tmp_path):
    _write_episode(tmp_path)
    with pytest.raises(EpisodeBagError, match="exists already"):
        EpisodeBagWriter(tmp_path, "ep1")
    with pytest.raises(ValueError, match="invalid episode id"):
        EpisodeBagWriter(tmp_path, "a/b")


def test_truncated_bag_is_reported_with_its_path(tmp_path):
    path = _write_episode(tmp_path)
    (mcap_file,) = path.glob("*.mcap")
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(EpisodeBagError, match="unreadable bag") as info:
        list(read_bag_messages(path))
    assert info.value.path == path
