"""Parameter files: any value of any parameter in config/*.yaml, and unknown keys, give the
node's config or a ConfigError naming the file or the parameter, never another exception."""

import contextlib
import importlib
from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from mtopt_bridge.params import ConfigError, config_from_params_files

ROOT = Path(__file__).resolve().parents[2]

#: config file -> (node name, config class) of the node that reads it.
NODES = {
    "camera.yaml": ("overhead_camera", "mtopt_camera.config:CameraConfig"),
    "collector.yaml": ("collector", "mtopt_policy.config:CollectorConfig"),
    "iiwa.yaml": ("iiwa_controller", "mtopt_iiwa.config:IiwaControllerConfig"),
    "learner.yaml": ("learner", "mtopt_learner.config:LearnerConfig"),
    "logger.yaml": ("logger", "mtopt_logger.config:LoggerConfig"),
    "policy.yaml": ("policy", "mtopt_policy.config:PolicyConfig"),
    "reset_bin.yaml": ("reset_bin", "mtopt_reset_bin.config:ResetBinConfig"),
}


def _config_class(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _parameters(file: str) -> list[tuple[str, str]]:
    """(node key, parameter name) of every parameter of the file."""
    document = yaml.safe_load((ROOT / "config" / file).read_text())
    return [
        (key, name)
        for key, block in document.items()
        if isinstance(block, dict) and isinstance(block.get("ros__parameters"), dict)
        for name in block["ros__parameters"]
    ]


PARAMETERS = sorted((file, key, name) for file in NODES for key, name in _parameters(file))

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _read(tmp: Path, file: str, document) -> None:
    node, spec = NODES[file]
    path = tmp / file
    path.write_text(yaml.safe_dump(document))
    cls = _config_class(spec)
    try:
        config = config_from_params_files(cls(), [path], f"/cell0/{node}")
    except ConfigError as exc:
        assert str(exc), "an empty error message"
        return
    assert isinstance(config, cls)


@given(target=st.sampled_from(PARAMETERS), value=values)
@example(target=("policy.yaml", "/**/policy", "image_size"), value=float("nan"))
@example(target=("iiwa.yaml", "/**/iiwa_controller", "right_bin_low"), value=[1e308, 0, 0])
def test_one_parameter_set_to_anything(tmp_path_factory, target, value):
    file, key, name = target
    document = yaml.safe_load((ROOT / "config" / file).read_text())
    document[key]["ros__parameters"][name] = value
    _read(tmp_path_factory.mktemp("p"), file, document)


@given(file=st.sampled_from(sorted(NODES)), name=st.text(min_size=1, max_size=12), value=values)
def test_an_unknown_parameter(tmp_path_factory, file, name, value):
    document = yaml.safe_load((ROOT / "config" / file).read_text())
    key = next(iter(document))
    document[key]["ros__parameters"][name] = value
    _read(tmp_path_factory.mktemp("p"), file, document)


@given(file=st.sampled_from(sorted(NODES)), text=st.text(max_size=300))
def test_arbitrary_text(tmp_path_factory, file, text):
    tmp = tmp_path_factory.mktemp("p")
    node, spec = NODES[file]
    path = tmp / file
    path.write_text(text)
    with contextlib.suppress(ConfigError):
        config_from_params_files(_config_class(spec)(), [path], f"/cell0/{node}")
