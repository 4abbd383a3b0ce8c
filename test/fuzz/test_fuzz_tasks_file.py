"""tasks.yaml: any document gives a registry or a TaskRegistryError naming the file."""

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from mtopt_core.tasks import TaskRegistryError, load_task_registry

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((ROOT / "config" / "tasks.yaml").read_text())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12)
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutated(draw_path, value):
    """GOOD with the value at one path (a list of keys/indices) replaced."""
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    node = doc
    for key in draw_path[:-1]:
        node = node[key]
    node[draw_path[-1]] = value
    return doc


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


PATHS = [p for p in _paths(GOOD) if p]


def _load(tmp_path, text: str) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(text)
    try:
        registry = load_task_registry(path)
    except TaskRegistryError as exc:
        assert str(path) in str(exc)
        return
    assert len(registry.names) > 0


@given(doc=documents)
def test_any_document(tmp_path_factory, doc):
    _load(tmp_path_factory.mktemp("t"), yaml.safe_dump(doc))


@given(path=st.sampled_from(PATHS), value=documents)
def test_one_value_of_the_real_file_replaced(tmp_path_factory, path, value):
    _load(tmp_path_factory.mktemp("t"), yaml.safe_dump(_mutated(path, value)))


@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path_factory, text):
    _load(tmp_path_factory.mktemp("t"), text)
