"""mtopt_bridge.params on real rclpy nodes: unknown parameters stop a node, naming the file,
the node and the key; which keys reach a node is decided as rclpy decides it."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import ConfigError, declare_config, params_file_sources

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class ProbeConfig:
    epsilon: float = 0.1
    steps: int = 3


class ProbeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("policy", **kwargs)
        self.config = declare_config(self, ProbeConfig)


def _steps(node: ProbeNode, _executor) -> int:
    return node.config.steps  # the exit code shows which value the node read


def _probe_args(*ros_args: str) -> list[str]:
    return ["probe", "--ros-args", "-r", "__ns:=/cell0", *ros_args]


def test_node_keys_select_the_same_blocks_as_rclpy(tmp_path):
    path = tmp_path / "keys.yaml"
    keys = ["/**", "/**/n", "/*/n", "/a/*", "/a/n", "n", "/x/**/n", "/a/b/n"]
    path.write_text(
        "".join(f"{key}:\n  ros__parameters: {{p{i}: {i}}}\n" for i, key in enumerate(keys))
        + "a:\n  b:\n    n:\n      ros__parameters: {nested: 1}\n"
    )
    sources = params_file_sources(str(path))
    assert len(sources) == len(keys) + 1
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        for namespace, name in [
            ("/", "n"),
            ("/a", "n"),
            ("/a/b", "n"),
            ("/x/y", "n"),
            ("/a", "m"),
        ]:
            node = Node(
                name,
                namespace=namespace,
                context=context,
                cli_args=["--ros-args", "--params-file", str(path)],
                use_global_arguments=False,
            )
            fqn = node.get_fully_qualified_name()
            ours = set().union(*(s.names for s in sources if s.applies_to(fqn)))
            assert set(node._parameter_overrides) == ours, fqn
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_an_unknown_key_in_a_params_file_stops_the_node_naming_file_node_and_key(tmp_path, capsys):
    good = tmp_path / "policy.yaml"
    good.write_text(
        "/**/policy:\n"
        "  ros__parameters:\n"
        "    steps: 5\n"
        "    use_sim_time: false\n"  # rclpy's own parameters are not unknown
        "    qos_overrides:\n"
        "      /parameter_events: {publisher: {depth: 1000}}\n"
        "/**/collector:\n"
        "  ros__parameters: {episodes: 2}\n"  # another node's block: not this node's business
    )
    assert (
        run_node(
            ProbeNode, "probe", args=_probe_args("--params-file", str(good)), main_loop=_steps
        )
        == 5
    )

    typo = tmp_path / "typo.yaml"
    typo.write_text("/**/policy:\n  ros__parameters:\n    epsilonn: 0.2\n")
    args = _probe_args("--params-file", str(good), "--params-file", str(typo))
    assert run_node(ProbeNode, "probe", args=args, main_loop=_steps) == 2
    err = capsys.readouterr().err
    assert err == (
        f"probe: invalid parameters: {typo}: node /cell0/policy: unknown parameter 'epsilonn'"
        " (did you mean 'epsilon'?) (known: epsilon, steps)\n"
    )


def test_an_unknown_p_argument_is_named_too(capsys):
    args = _probe_args("-p", "stepz:=4", "-p", "epsilon:=0.5")
    assert run_node(ProbeNode, "probe", args=args, main_loop=_steps) == 2
    err = capsys.readouterr().err
    assert (
        "-p stepz:=4: node /cell0/policy: unknown parameter 'stepz' (did you mean 'steps'?)" in err
    )
    assert "epsilon:=0.5" not in err  # known: fine
    assert len(err.splitlines()) == 1


def test_an_unknown_override_given_in_code_is_refused_without_a_file():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ConfigError, match=r"^node /policy: unknown parameter 'colour'"):
            ProbeNode(context=context, parameter_overrides=[Parameter("colour", value="red")])
    finally:
        rclpy.try_shutdown(context=context)


def test_a_real_node_names_the_config_file_with_the_typo(tmp_path):
    """policy_node started as a launch file starts it, from a copy of config/policy.yaml with
    one key misspelt."""
    config = tmp_path / "policy.yaml"
    text = (ROOT / "config" / "policy.yaml").read_text()
    assert "\n    epsilon:" in text
    config.write_text(text.replace("\n    epsilon:", "\n    epsilonn:"))
    result = subprocess.run(
        [str(BIN / "policy_node"), "--ros-args", "-r", "__ns:=/cell0", "-r", "__node:=policy"]
        + ["--params-file", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{config}: node /cell0/policy: unknown parameter 'epsilonn'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
