"""`mtopt-launch PKG FILE`: launch files, share directories and executables found through the
ament index, with the rules of ros2launch (`ros2 launch`) and launch_ros."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mtopt_launch import cli
from mtopt_launch.packages import (
    PackageLookupError,
    find_launch_file,
    find_package_executable,
    find_package_share,
)

ONE_NODE = "launch:\n  - arg: {name: n, default: '1'}\n  - node: {pkg: tool_pkg, exec: tool}\n"


@pytest.fixture
def tool_prefix(tmp_path, monkeypatch, install_package) -> Path:
    """A prefix with package `tool_pkg`: an executable and launch files in its share tree."""
    sources = tmp_path / "src"
    (sources / "launch" / "nested").mkdir(parents=True)
    (sources / "launch" / "top.launch.yaml").write_text(ONE_NODE)
    (sources / "launch" / "nested" / "deep.launch.yaml").write_text(ONE_NODE)
    (sources / "extra").mkdir()
    (sources / "extra" / "top.launch.yaml").write_text(ONE_NODE)  # a second top.launch.yaml
    prefix = install_package(
        tmp_path / "install",
        "tool_pkg",
        share={"launch": sources / "launch", "extra": sources / "extra"},
        executables={"tool": "#!/bin/sh\nexit 0\n"},
    )
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.chdir(tmp_path)
    return prefix


def test_launch_file_is_found_anywhere_under_share_once(tool_prefix):
    share = tool_prefix / "share" / "tool_pkg"
    assert find_package_share("tool_pkg") == share
    # Recursive, through the symlinked directories a symlink install makes.
    assert find_launch_file("tool_pkg", "deep.launch.yaml") == (
        share / "launch" / "nested" / "deep.launch.yaml"
    )


def test_launch_file_errors_match_ros2launch(tool_prefix):
    share = tool_prefix / "share" / "tool_pkg"
    with pytest.raises(PackageLookupError) as info:
        find_launch_file("tool_pkg", "missing.launch.yaml")
    assert str(info.value) == (
        "file 'missing.launch.yaml' was not found in the share directory of package "
        f"'tool_pkg' which is at '{share}'"
    )
    with pytest.raises(PackageLookupError) as info:
        find_launch_file("tool_pkg", "top.launch.yaml")
    message = str(info.value)
    assert "file 'top.launch.yaml' was found more than once" in message
    assert str(share / "launch" / "top.launch.yaml") in message
    assert str(share / "extra" / "top.launch.yaml") in message
    # ros2 matches file names only; a path is not a launch file name of the package.
    with pytest.raises(PackageLookupError, match="is not a file name"):
        find_launch_file("tool_pkg", "launch/top.launch.yaml")
    with pytest.raises(PackageLookupError, match="package 'nope_pkg' not found"):
        find_launch_file("nope_pkg", "top.launch.yaml")


def test_executable_is_lib_pkg_exec_of_the_package_prefix(tool_prefix):
    assert find_package_executable("tool_pkg", "tool") == tool_prefix / "lib/tool_pkg/tool"
    with pytest.raises(PackageLookupError, match=r"no executable 'other' in .*\(it has: tool\)"):
        find_package_executable("tool_pkg", "other")
    with pytest.raises(PackageLookupError, match="invalid executable name"):
        find_package_executable("tool_pkg", "../tool")


def test_cli_package_form_and_path_form(tool_prefix, tmp_path, capsys):
    # PKG FILE args: the file comes from the package's share directory.
    assert cli.main(["--print", "tool_pkg", "deep.launch.yaml", "n:=5"]) == 0
    out = capsys.readouterr().out
    assert f"# launch file: {tool_prefix}/share/tool_pkg/launch/nested/deep.launch.yaml" in out
    assert "# arg n = '5'" in out and f"{tool_prefix}/lib/tool_pkg/tool --ros-args" in out
    # An existing file as the first argument is the launch file; every other argument is a
    # launch argument (ros2 launch's "single file" mode).
    path = tmp_path / "src" / "launch" / "top.launch.yaml"
    assert cli.main(["--print", str(path), "n:=7"]) == 0
    assert "# arg n = '7'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tool_pkg"], "give the launch file of package 'tool_pkg'"),
        (["tool_pkg", "n:=1"], "give the launch file of package 'tool_pkg'"),
        (["tool_pkg", "top.launch.yaml"], "was found more than once"),
        (["no_such_pkg", "x.launch.yaml"], "package 'no_such_pkg' not found in the ament index"),
        (["launch/missing.launch.yaml"], "launch file not found: launch/missing.launch.yaml"),
        (["tool_pkg", "deep.launch.yaml", "bogus:=1"], "unknown launch argument(s): bogus"),
    ],
)
def test_cli_usage_errors_exit_2_and_say_why(tool_prefix, capsys, argv, message):
    assert cli.main(argv) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_include_and_param_file_through_find_pkg_share(tool_prefix, tmp_path, capsys, monkeypatch):
    """A launch file that includes another of its package and reads a parameter file from
    its share directory, the way mtopt_bringup's files do, started from an unrelated cwd."""
    config = tmp_path / "src" / "launch" / "nested" / "params.yaml"
    config.write_text("/**:\n  ros__parameters: {a: 1}\n")
    (tmp_path / "src" / "launch" / "outer.launch.yaml").write_text(
        textwrap.dedent(
            """\
            launch:
              - include:
                  file: $(find-pkg-share tool_pkg)/launch/nested/deep.launch.yaml
                  arg: [{name: n, value: "2"}]
              - node:
                  pkg: tool_pkg
                  exec: tool
                  name: configured
                  param: [{from: $(find-pkg-share tool_pkg)/launch/nested/params.yaml}]
            """
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["--print", "tool_pkg", "outer.launch.yaml"]) == 0
    out = capsys.readouterr().out
    assert "# arg n = '2'" in out
    share = tool_prefix / "share" / "tool_pkg"
    assert f"--params-file {share}/launch/nested/params.yaml" in out
