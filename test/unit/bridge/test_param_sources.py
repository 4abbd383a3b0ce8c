"""mtopt_bridge.params without a node: node-key matching, parameter files, ROS arguments."""

import pytest

from mtopt_bridge.params import (
    ConfigError,
    ParameterSource,
    node_key_matches,
    parameter_error,
    params_file_sources,
    ros_argument_sources,
)


@pytest.mark.parametrize(
    ("key", "fqn", "matches"),
    [
        ("/**", "/policy", True),
        ("/**", "/cell0/policy", True),
        ("/**/policy", "/policy", True),  # /** also matches no namespace level
        ("/**/policy", "/a/b/policy", True),
        ("/**/policy", "/cell0/policy_node", False),  # whole names only
        ("/**/policy", "/cell0/collector", False),
        ("/*/policy", "/cell0/policy", True),
        ("/*/policy", "/policy", False),  # /* is exactly one level
        ("/*/policy", "/a/b/policy", False),
        ("/cell0/*", "/cell0/policy", True),
        ("/cell0/*", "/cell1/policy", False),
        ("/cell0/policy", "/cell0/policy", True),
        ("cell0/policy", "/cell0/policy", True),  # a missing leading slash is added
        ("policy", "/cell0/policy", False),  # a bare name is /policy, not any namespace
        ("/x/**/policy", "/x/policy", True),
        ("/x/**/policy", "/y/policy", False),
    ],
)
def test_node_keys_match_like_rclpy(key, fqn, matches):
    assert node_key_matches(key, fqn) is matches


def test_a_params_file_gives_one_source_per_block_with_nested_keys_and_dotted_names(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**/policy:\n"
        "  ros__parameters:\n"
        "    epsilon: 0.1\n"
        "    bins: {right: [0.5, 0.1], left: {x: 1}}\n"
        "cell3:\n"
        "  collector:\n"
        "    ros__parameters: {episodes: 2}\n"
    )
    policy, collector = params_file_sources(str(path))
    assert policy == ParameterSource(
        str(path), "/**/policy", frozenset({"epsilon", "bins.right", "bins.left.x"})
    )
    assert collector.node_key == "cell3/collector" and collector.names == {"episodes"}
    assert collector.applies_to("/cell3/collector") and not collector.applies_to("/collector")
    assert params_file_sources(str(tmp_path / "missing.yaml")) == []


def test_ros_arguments_give_params_files_and_p_rules_in_order(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("/**:\n  ros__parameters: {a: 1}\n")
    second.write_text("/**/n:\n  ros__parameters: {b: 2}\n")
    argv = [
        "prog",
        "--params-file",  # before --ros-args: the program's own argument, not rcl's
        str(second),
        "--ros-args",
        "-r",
        "__ns:=/x",
        "--params-file",
        str(first),
        "-p",
        "c:=3",
        "--param",
        "n:d:=a:=b",
        "--",
        "-p",
        "ignored:=1",
        "--ros-args",
        "--log-level",
        "debug",
        "--params-file",
        str(second),
    ]
    sources = ros_argument_sources(argv)
    assert [(s.origin, s.node_key, set(s.names)) for s in sources] == [
        (str(first), "/**", {"a"}),
        ("-p c:=3", "/**", {"c"}),
        ("-p n:d:=a:=b", "n", {"d"}),
        (str(second), "/**/n", {"b"}),
    ]


def test_parameter_error_names_the_parameter():
    expected = pytest.raises(ConfigError, match=r"^parameter tasks_file: no such file$")
    with expected, parameter_error("tasks_file", FileNotFoundError):
        raise FileNotFoundError("no such file")
    # Other errors pass through unchanged.
    with pytest.raises(KeyError), parameter_error("tasks_file", FileNotFoundError):
        raise KeyError("x")
