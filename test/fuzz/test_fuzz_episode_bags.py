"""Episode bags: truncated, bit-flipped, overwritten, metadata-damaged, without EpisodeInfo or
with a foreign schema on its topic. The learner's decoder returns an episode (possibly with a
skip reason) or raises EpisodeBagError naming the bag, never another exception."""

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtopt_core.episode_bag import EpisodeBagError, EpisodeBagWriter
from mtopt_core.tasks import load_task_registry
from mtopt_learner.episode_decoder import DecodedEpisode, episode_from_bag

_spec = importlib.util.spec_from_file_location(
    "_learner_bag_fixtures", Path(__file__).resolve().parents[1] / "unit/learner/conftest.py"
)
bags = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bags  # its dataclasses look their module up
_spec.loader.exec_module(bags)

REGISTRY = load_task_registry()


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory) -> Path:
    return bags.write_episode_bag(tmp_path_factory.mktemp("good"), "ep-0", REGISTRY).path


def _decode(bag: Path) -> None:
    for labels in ("sd", "oracle"):
        try:
            episode = episode_from_bag(bag, REGISTRY, labels)
        except EpisodeBagError as exc:
            assert str(bag) in str(exc)
            continue
        assert isinstance(episode, DecodedEpisode)


def _copy(good: Path, tmp: Path) -> tuple[Path, Path]:
    bag = tmp / good.name
    shutil.copytree(good, bag)
    (mcap,) = sorted(bag.glob("*.mcap"))
    return bag, mcap


@given(fraction=st.floats(0.0, 0.999))
def test_truncated(tmp_path_factory, good_bag, fraction):
    bag, mcap = _copy(good_bag, tmp_path_factory.mktemp("b"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * fraction)])
    _decode(bag)


@given(flips=st.lists(st.tuples(st.floats(0, 0.9999), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flips(tmp_path_factory, good_bag, flips):
    bag, mcap = _copy(good_bag, tmp_path_factory.mktemp("b"))
    data = bytearray(mcap.read_bytes())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    mcap.write_bytes(bytes(data))
    _decode(bag)


@given(where=st.floats(0, 0.9999), junk=st.binary(min_size=1, max_size=64))
def test_overwritten_bytes(tmp_path_factory, good_bag, where, junk):
    bag, mcap = _copy(good_bag, tmp_path_factory.mktemp("b"))
    data = bytearray(mcap.read_bytes())
    start = int(where * len(data))
    data[start : start + len(junk)] = junk
    mcap.write_bytes(bytes(data[: len(data)]))
    _decode(bag)


@given(text=st.text(max_size=200))
def test_damaged_metadata(tmp_path_factory, good_bag, text):
    bag, _ = _copy(good_bag, tmp_path_factory.mktemp("b"))
    (bag / "metadata.yaml").write_text(text)
    _decode(bag)


def test_no_episode_info(tmp_path):
    with EpisodeBagWriter(tmp_path, "ep-1", typestore=bags.STORE) as writer:
        pixels = np.zeros((*bags.CAMERA_SHAPE, 3), np.uint8)
        writer.write("/cell0/camera/overhead/image_raw", bags.IMAGE, 1, bags.image_msg(pixels, 1))
        writer.finish()
    with pytest.raises(EpisodeBagError, match="ep-1"):
        episode_from_bag(tmp_path / "ep-1", REGISTRY, "sd")


def test_foreign_schema_on_the_episode_info_topic(tmp_path):
    store = bags.STORE
    with EpisodeBagWriter(tmp_path, "ep-2", typestore=store) as writer:
        msg = store.types["std_msgs/msg/String"](data="labels: all success")
        writer.write("/cell0/episode_info", "std_msgs/msg/String", 1, msg)
        writer.finish()
    with pytest.raises(EpisodeBagError, match="ep-2"):
        episode_from_bag(tmp_path / "ep-2", REGISTRY, "sd")
