"""Parsing YAML launch files into NodeLaunch data (no processes)."""

from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mtopt_launch import cli
from mtopt_launch.commands import (
    ExecutableNotFoundError,
    node_command,
    resolve_executable,
)
from mtopt_launch.description import (
    InlineParams,
    LaunchArgumentError,
    LaunchFileError,
    ParamFile,
)
from mtopt_launch.parser import parse_cli_args, parse_launch_file

DEMO_LAUNCH = Path(__file__).resolve().parent / "fixtures/demo_graph/launch/demo.launch.yaml"


def write(path: Path, text: str) -> Path:
    """Write dedented text and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def parse(tmp_path: Path, text: str, name="main.launch.yaml", args=None, environ=None):
    path = write(tmp_path / name, text)
    return parse_launch_file(path, args or {}, environ=environ)


def error_of(tmp_path, text, args=None, exc=LaunchFileError, environ=None):
    with pytest.raises(exc) as info:
        parse(tmp_path, text, args=args, environ=environ)
    return info.value


# -- arg / let / substitutions ----------------------------------------------------------------


def test_arg_default_cli_override_and_let(tmp_path):
    text = """\
        launch:
          - arg: {name: episodes, default: "3", description: how many}
          - arg: {name: label, default: "run-$(var episodes)"}
          - let: {name: doubled, value: "$(var episodes)$(var episodes)"}
        """
    d = parse(tmp_path, text)
    assert d.configurations == {"episodes": "3", "label": "run-3", "doubled": "33"}
    assert [(a.name, a.value, a.default) for a in d.arguments] == [
        ("episodes", "3", "3"),
        ("label", "run-3", "run-$(var episodes)"),
    ]
    assert d.arguments[0].description == "how many"
    d = parse(tmp_path, text, args={"episodes": "5"})
    assert d.configurations["label"] == "run-5" and d.configurations["doubled"] == "55"


def test_env_substitutions_and_dirname(tmp_path):
    text = """\
        launch:
          - let: {name: a, value: $(env MTL_TEST_VAR)}
          - let: {name: b, value: $(env MTL_UNSET_VAR fallback)}
          - let: {name: c, value: $(dirname)}
          - let: {name: d, value: $(filename)}
        """
    d = parse(tmp_path, text, environ={"MTL_TEST_VAR": "from-env"})
    assert d.configurations["a"] == "from-env"
    assert d.configurations["b"] == "fallback"
    assert d.configurations["c"] == str(tmp_path)
    assert d.configurations["d"] == str(tmp_path / "main.launch.yaml")


def test_if_unless_conditions(tmp_path):
    text = """\
        launch:
          - arg: {name: sim, default: "true"}
          - let: {name: mode, value: sim, if: $(var sim)}
          - let: {name: mode, value: robot, unless: $(var sim)}
        """
    assert parse(tmp_path, text).configurations["mode"] == "sim"
    assert parse(tmp_path, text, args={"sim": "False"}).configurations["mode"] == "robot"
    err = error_of(tmp_path, text, args={"sim": "maybe"})
    assert "must evaluate to true/false/1/0" in str(err) and err.line == 3


def test_arg_choices(tmp_path):
    text = """\
        launch:
          - arg:
              name: mode
              default: sim
              choice: [{value: sim}, {value: robot}]
        """
    assert parse(tmp_path, text, args={"mode": "robot"}).configurations["mode"] == "robot"
    err = error_of(tmp_path, text, args={"mode": "moon"})
    assert "valid choices" in str(err) and err.line == 2


# -- node -------------------------------------------------------------------------------------


def test_node_all_attributes(tmp_path):
    params = write(tmp_path / "p.yaml", "/**:\n  ros__parameters: {a: 1}\n")
    text = f"""\
        launch:
          - arg: {{name: rate, default: "2.5"}}
          - node:
              pkg: mtopt_launch
              exec: mtopt-demo-cell
              name: cell
              namespace: cell0
              output: screen
              on_exit: shutdown
              args: "--flag  'two words'"
              ros_args: --log-level debug
              param:
                - from: {params}
                - name: rate
                  value: $(var rate)
                - {{name: count, value: 4}}
                - {{name: names, value: [a, b]}}
                - {{name: label, value: "plain"}}
                - name: gains
                  param:
                    - {{name: p, value: 1.5}}
                    - {{name: d, value: 0.1}}
              remap:
                - {{from: image, to: /cam/$(var rate)}}
              env:
                - {{name: MY_ENV, value: "x"}}
        """
    d = parse(tmp_path, text)
    (node,) = d.nodes
    assert (node.pkg, node.executable, node.name, node.namespace) == (
        "mtopt_launch",
        "mtopt-demo-cell",
        "cell",
        "/cell0",
    )
    assert node.output == "screen" and node.required
    assert node.arguments == ["--flag", "two words"]
    assert node.ros_arguments == ["--log-level", "debug"]
    assert node.param_files == [str(params)]
    assert isinstance(node.parameters[0], ParamFile)
    assert all(isinstance(p, InlineParams) for p in node.parameters[1:])
    # "$(var rate)" evaluates to "2.5" and is typed by YAML rules, as launch_ros does.
    assert node.inline_params == {
        "rate": 2.5,
        "count": 4,
        "names": ["a", "b"],
        "label": "plain",
        "gains": {"p": 1.5, "d": 0.1},
    }
    assert node.remaps == [("image", "/cam/2.5")]
    assert node.env == {"MY_ENV": "x"}
    assert node.fully_qualified_name == "/cell0/cell" and node.label == "cell0/cell"
    assert node.source.line == 3


def test_node_defaults(tmp_path):
    d = parse(tmp_path, "launch:\n  - node: {pkg: p, exec: e}\n")
    (node,) = d.nodes
    assert node.name is None and node.namespace is None
    assert node.output == "log" and not node.required
    assert node.label == "e" and node.parameters == []
    assert not node.respawn and node.respawn_delay == 0.0 and node.respawn_max_retries == -1


def test_node_respawn_attributes(tmp_path):
    text = """\
        launch:
          - arg: {name: respawn, default: "false"}
          - node: {pkg: p, exec: a, respawn: "true", respawn_delay: 2.5}
          - node: {pkg: p, exec: b, respawn: "$(var respawn)"}
          - node: {pkg: p, exec: c, respawn: "1", respawn_delay: 0.0, respawn_max_retries: 3}
          - node: {pkg: p, exec: d, respawn: "False", respawn_max_retries: -1}
          - node: {pkg: p, exec: e, respawn: "$(eval '2 > 1')"}
        """
    nodes = {n.executable: n for n in parse(tmp_path, text).nodes}
    assert (nodes["a"].respawn, nodes["a"].respawn_delay) == (True, 2.5)
    assert not nodes["b"].respawn and nodes["b"].respawn_delay == 0.0
    assert (nodes["c"].respawn, nodes["c"].respawn_max_retries) == (True, 3)
    assert not nodes["d"].respawn and nodes["d"].respawn_max_retries == -1
    assert nodes["e"].respawn
    # The substitution is evaluated with the launch argument, as launch's typed substitution.
    again = parse(tmp_path, text, args={"respawn": "true"}).nodes
    assert [n.respawn for n in again] == [True, True, True, False, True]
    assert [n.respawn for n in parse(tmp_path, text, args={"respawn": "0"}).nodes][1] is False


@pytest.mark.parametrize(
    ("attribute", "problem"),
    [
        ('respawn: "maybe"', "'respawn' of 'node' must evaluate to true or false"),
        ('respawn: ""', "'respawn' of 'node' must evaluate to true or false"),
        ('respawn: "$(var nope)"', "'respawn' of 'node': undefined launch configuration"),
        ("respawn: true", "'respawn' of 'node' must be a string"),  # ros2: str attribute
        ("respawn_delay: 2", "'respawn_delay' of 'node' must be a YAML float such as 2.0"),
        ('respawn_delay: "2.0"', "'respawn_delay' of 'node' must be a YAML float"),
        ("respawn_delay: -1.0", "must be a finite number >= 0.0, got -1.0"),
        ("respawn_delay: .nan", "must be a finite number >= 0.0"),
        ("respawn_max_retries: 1.5", "'respawn_max_retries' of 'node' must be a YAML integer"),
        ('respawn_max_retries: "3"', "'respawn_max_retries' of 'node' must be a YAML integer"),
        ("respawn_max_retries: true", "'respawn_max_retries' of 'node' must be a YAML integer"),
    ],
)
def test_node_respawn_bad_values_name_file_line_and_key(tmp_path, attribute, problem):
    text = f"launch:\n  - node:\n      pkg: p\n      exec: e\n      {attribute}\n"
    err = error_of(tmp_path, text)
    assert str(err).startswith(f"{tmp_path / 'main.launch.yaml'}:5: "), err
    assert problem in str(err), err


def test_group_push_ros_namespace_both_spellings_and_scoping(tmp_path):
    text = """\
        launch:
          - let: {name: x, value: outer}
          - group:
              - push-ros-namespace: {namespace: robot}
              - let: {name: x, value: inner}
              - node: {pkg: p, exec: a, name: a}
              - group:
                  - push_ros_namespace: {namespace: arm}
                  - node: {pkg: p, exec: b, name: b}
                  - node: {pkg: p, exec: c, name: c, namespace: sub}
                  - node: {pkg: p, exec: d, name: d, namespace: /absolute}
          - node: {pkg: p, exec: e, name: e}
          - group:
              scoped: false
              children:
                - let: {name: leaked, value: "yes"}
        """
    d = parse(tmp_path, text)
    assert [(n.name, n.namespace) for n in d.nodes] == [
        ("a", "/robot"),
        ("b", "/robot/arm"),
        ("c", "/robot/arm/sub"),
        ("d", "/absolute"),
        ("e", None),
    ]
    assert d.configurations["x"] == "outer"  # the scoped group's let did not leak
    assert d.configurations["leaked"] == "yes"  # scoped: false


def test_group_forwarding_false_keeps_only_keep(tmp_path):
    text = """\
        launch:
          - let: {name: a, value: A}
          - group:
              forwarding: false
              keep: [{name: b, value: $(var a)}]
              children:
                - node: {pkg: p, exec: e, name: $(var b)}
        """
    assert parse(tmp_path, text).nodes[0].name == "A"
    text = text.replace("name: $(var b)", "name: $(var a)")
    assert "undefined launch configuration 'a'" in str(error_of(tmp_path, text))


def test_include_with_args_and_its_own_dirname(tmp_path):
    write(
        tmp_path / "sub" / "inner.launch.yaml",
        """\
        launch:
          - arg: {name: robot}
          - arg: {name: speed, default: "1"}
          - node:
              pkg: p
              exec: e
              name: $(var robot)
              param: [{from: $(dirname)/inner_params.yaml}]
        """,
    )
    write(tmp_path / "sub" / "inner_params.yaml", "/**:\n  ros__parameters: {a: 1}\n")
    text = """\
        launch:
          - arg: {name: who, default: r2}
          - group:
              - push-ros-namespace: {namespace: ns}
              - include:
                  file: $(dirname)/sub/inner.launch.yaml
                  arg:
                    - {name: robot, value: $(var who)}
        """
    d = parse(tmp_path, text, args={"speed": "3"})
    (node,) = d.nodes
    assert (node.name, node.namespace) == ("r2", "/ns")
    assert node.param_files == [str(tmp_path / "sub" / "inner_params.yaml")]
    # CLI args reach included files; args declared there count as declared.
    assert [a.name for a in d.arguments] == ["who", "robot", "speed"]
    assert d.arguments[2].value == "3"


def test_set_env_and_unset_env(tmp_path):
    text = """\
        launch:
          - set_env: {name: MTL_A, value: "1"}
          - unset_env: {name: MTL_B}
          - let: {name: seen, value: $(env MTL_A)}
          - node: {pkg: p, exec: e}
        """
    d = parse(tmp_path, text, environ={"MTL_B": "2"})
    assert d.configurations["seen"] == "1"
    assert d.nodes[0].env == {"MTL_A": "1", "MTL_B": None}


def test_demo_launch_file_parses_with_config_keys(demo_graph_env, demo_graph_prefix):
    d = parse_launch_file(DEMO_LAUNCH, {"episodes": "2"})
    cell, collector = d.nodes
    assert (cell.label, collector.label) == ("demo/demo_cell", "demo/demo_collector")
    assert collector.required and not cell.required
    assert collector.inline_params == {"episodes": 2}
    # $(find-pkg-share demo_graph)/config: the installed share directory, not the source tree.
    config = demo_graph_prefix / "share" / "demo_graph" / "config" / "demo.yaml"
    assert cell.param_files == [str(config)] == collector.param_files
    keys = yaml.safe_load(config.read_text())
    assert {"/**/demo_cell", "/**/demo_collector"} <= set(keys)


# -- errors -----------------------------------------------------------------------------------


def test_unsupported_tag_names_tag_and_line(tmp_path):
    err = error_of(tmp_path, "launch:\n  - arg: {name: a, default: x}\n  - timer: {period: 1}\n")
    assert err.line == 3 and "unsupported tag 'timer'" in str(err)
    assert str(err).startswith(f"{tmp_path / 'main.launch.yaml'}:3:")


def test_unsupported_key_and_required_hint(tmp_path):
    err = error_of(tmp_path, "launch:\n  - node:\n      pkg: p\n      exec: e\n      sigterm: x\n")
    assert err.line == 5 and "unsupported key 'sigterm' in 'node'" in str(err)
    err = error_of(
        tmp_path, "launch:\n  - node:\n      pkg: p\n      exec: e\n      required: y\n"
    )
    assert err.line == 5 and "on_exit: shutdown" in str(err)


def test_undefined_var_names_var_and_line(tmp_path):
    err = error_of(
        tmp_path,
        "launch:\n  - let: {name: a, value: x}\n  - node:\n"
        "      pkg: p\n      exec: $(var missing_exec)\n",
    )
    assert err.line == 5 and "'missing_exec'" in str(err)


def test_missing_required_arg(tmp_path):
    err = error_of(tmp_path, "launch:\n  - arg: {name: robot_ip, description: IP of the arm}\n")
    assert err.line == 2
    assert "missing launch argument 'robot_ip'" in str(err) and "robot_ip:=VALUE" in str(err)


def test_unknown_cli_arg_lists_declared_args(tmp_path):
    err = error_of(
        tmp_path,
        "launch:\n  - arg: {name: episodes, default: '3'}\n  - arg: {name: ns}\n",
        args={"ns": "x", "episode": "2"},
        exc=LaunchArgumentError,
    )
    assert "unknown launch argument(s): episode" in str(err)
    assert "episodes (default '3')" in str(err) and "ns (required)" in str(err)


def test_bad_cli_arg_form():
    with pytest.raises(LaunchArgumentError, match="name:=value"):
        parse_cli_args(["episodes=3"])
    assert parse_cli_args(["a:=1", "b:=x:=y", "c:="]) == {"a": "1", "b": "x:=y", "c": ""}


def test_bad_include_path(tmp_path):
    err = error_of(
        tmp_path,
        "launch:\n  - include:\n      file: $(dirname)/nope.launch.yaml\n",
    )
    assert err.line == 3 and "included launch file not found" in str(err)


def test_recursive_include(tmp_path):
    err = error_of(tmp_path, "launch:\n  - include: {file: $(filename)}\n")
    assert "recursive include" in str(err)


def test_missing_param_file(tmp_path):
    err = error_of(
        tmp_path,
        "launch:\n  - node:\n      pkg: p\n      exec: e\n      param:\n"
        "        - from: /nonexistent/params.yaml\n",
    )
    assert err.line == 6 and "parameter file not found" in str(err)


def test_non_string_attribute_is_rejected_like_ros2(tmp_path):
    err = error_of(tmp_path, "launch:\n  - arg: {name: episodes, default: 3}\n")
    assert err.line == 2 and "must be a string" in str(err)


def test_yaml_errors_carry_lines(tmp_path):
    err = error_of(tmp_path, "launch:\n  - node: {pkg: p, exec: e}\n  - node: {pkg: [\n")
    assert err.line >= 3 and "invalid YAML" in str(err)
    err = error_of(tmp_path, "launch:\n  - node:\n      pkg: p\n      pkg: q\n      exec: e\n")
    assert err.line == 4 and "duplicate key 'pkg'" in str(err)
    err = error_of(tmp_path, "nodes: []\n")
    assert "top-level 'launch:'" in str(err)


def test_invalid_names(tmp_path):
    err = error_of(tmp_path, "launch:\n  - node: {pkg: p, exec: e, name: 'bad-name'}\n")
    assert "invalid node name" in str(err)
    err = error_of(tmp_path, "launch:\n  - push-ros-namespace: {namespace: '9lives'}\n")
    assert "invalid ROS namespace" in str(err)


# -- command lines ------------------------------------------------------------------------------


def test_node_command_line_and_inline_params_file(tmp_path):
    text = """\
        launch:
          - group:
              - push-ros-namespace: {namespace: cell0}
              - node:
                  pkg: p
                  exec: e
                  name: policy
                  args: --verbose
                  param:
                    - {name: epsilon, value: 0.1}
                  remap:
                    - {from: a, to: b}
          - node:
              pkg: p
              exec: e
              name: loose
              param: [{name: k, value: 1}]
        """
    d = parse(tmp_path, text)
    out = tmp_path / "params"
    out.mkdir()
    exe = Path("/opt/bin/e")
    cmd = node_command(d.nodes[0], exe, out)
    assert cmd[:6] == ["/opt/bin/e", "--verbose", "--ros-args", "-r", "__node:=policy", "-r"]
    assert cmd[6] == "__ns:=/cell0"
    assert cmd[7] == "--params-file" and cmd[-2:] == ["-r", "a:=b"]
    written = yaml.safe_load(Path(cmd[8]).read_text())
    assert written == {"/cell0/policy": {"ros__parameters": {"epsilon": 0.1}}}
    # Without a namespace, launch_ros keys inline params with the wildcard.
    cmd = node_command(d.nodes[1], exe, out)
    assert "-r" in cmd and "__ns:=" not in " ".join(cmd)
    written = yaml.safe_load(Path(cmd[cmd.index("--params-file") + 1]).read_text())
    assert written == {"/**": {"ros__parameters": {"k": 1}}}


def test_resolve_executable_colcon_lib_through_the_ament_index_and_error(
    tmp_path, monkeypatch, demo_graph_env, demo_graph_prefix, install_package
):
    assert resolve_executable("demo_graph", "mtopt-demo-cell") == (
        demo_graph_prefix / "lib" / "demo_graph" / "mtopt-demo-cell"
    )
    # The venv is a colcon-style prefix too (scripts/setup.sh): lib/<pkg>/<console script>.
    assert resolve_executable("mtopt_launch", "mtopt-launch") == (
        Path(sys.prefix) / "lib" / "mtopt_launch" / "mtopt-launch"
    )
    prefix = install_package(tmp_path / "install", "my_pkg")
    exe = prefix / "lib" / "my_pkg" / "my_node"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert resolve_executable("my_pkg", "my_node") == exe
    with pytest.raises(ExecutableNotFoundError) as info:
        resolve_executable("my_pkg", "no_such_node")
    assert "'no_such_node' of package 'my_pkg'" in str(info.value)
    assert f"no executable 'no_such_node' in {exe.parent} (it has: my_node)" in str(info.value)
    # ros2 runs only what the ament index knows: a package without a marker is not found.
    with pytest.raises(ExecutableNotFoundError) as info:
        resolve_executable("unregistered_pkg", "my_node")
    assert "package 'unregistered_pkg' not found in the ament index" in str(info.value)


def test_cli_print_and_errors(tmp_path, capsys, demo_graph_env):
    assert cli.main(["--print", str(DEMO_LAUNCH), "episodes:=4"]) == 0
    out = capsys.readouterr().out
    assert "# arg episodes = '4'" in out
    assert "mtopt-demo-cell --ros-args -r __node:=demo_cell -r __ns:=/demo --params-file" in out
    assert "required (on_exit: shutdown)" in out and "inline params: episodes: 4" in out
    respawning = write(
        tmp_path / "respawn.launch.yaml",
        "launch:\n  - node: {pkg: mtopt_launch, exec: mtopt-launch, respawn: 'true',"
        " respawn_delay: 1.5, respawn_max_retries: 2}\n",
    )
    assert cli.main(["--print", str(respawning)]) == 0
    assert "respawn (after 1.5 s, at most 2 times)" in capsys.readouterr().out

    bad = write(tmp_path / "bad.launch.yaml", "launch:\n  - node: {pkg: nopkg, exec: nope}\n")
    assert cli.main([str(bad)]) == cli.EXIT_USAGE
    assert "executable 'nope' of package 'nopkg' not found" in capsys.readouterr().err
    assert cli.main([str(DEMO_LAUNCH), "bogus:=1"]) == cli.EXIT_USAGE
    assert "unknown launch argument(s): bogus" in capsys.readouterr().err
