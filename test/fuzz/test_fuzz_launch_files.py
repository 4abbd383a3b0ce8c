"""Launch files: any document, or a real launch file with one value replaced, gives a launch
description or a LaunchError (file:line: problem), never another exception."""

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from mtopt_launch.description import LaunchDescription, LaunchError
from mtopt_launch.parser import parse_launch_file

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted(ROOT.glob("launch/*.launch.yaml"))
#: Launch arguments without a default, per file (test/ros/bridge/test_launch_configs.py).
LAUNCH_ARGS = {
    "sim_cell.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt"},
    "cell.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt"},
    "sim_learning.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt"},
    "robot_cell.launch.yaml": {"sd_checkpoint": "/tmp/sd.ckpt"},
    "offline_learning.launch.yaml": {"bag_dir": "/tmp/episodes", "out_dir": "/tmp/run"},
}

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=16),
        st.sampled_from(
            ["$(var cells)", "$(find-pkg-share nope)", "$(env X)", "$(", "$(eval 1/0)"]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


TARGETS = [
    (path.name, p) for path in LAUNCH_FILES for p in _paths(yaml.safe_load(path.read_text())) if p
]


def _parse(path: Path, args: dict[str, str] | None = None) -> None:
    try:
        description = parse_launch_file(path, args or {}, environ={})
    except LaunchError as exc:
        assert str(exc)
        return
    assert isinstance(description, LaunchDescription)


@given(target=st.sampled_from(TARGETS), value=values)
def test_one_value_of_a_real_launch_file_replaced(tmp_path_factory, target, value):
    name, path = target
    document = yaml.safe_load((ROOT / "launch" / name).read_text())
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    out = tmp_path_factory.mktemp("l") / name
    out.write_text(yaml.safe_dump(document))
    _parse(out, LAUNCH_ARGS.get(name))


@given(document=values)
def test_any_document(tmp_path_factory, document):
    out = tmp_path_factory.mktemp("l") / "x.launch.yaml"
    out.write_text(yaml.safe_dump({"launch": document}))
    _parse(out)


@given(text=st.text(max_size=300))
def test_arbitrary_text(tmp_path_factory, text):
    out = tmp_path_factory.mktemp("l") / "x.launch.yaml"
    out.write_text(text)
    _parse(out)
