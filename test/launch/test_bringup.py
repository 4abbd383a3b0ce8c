"""mtopt_bringup: the workspace's launch/ and config/ as an installed ROS 2 package, both in the
venv (scripts/setup.sh, a symlink install) and as `colcon build` installs it (its CMakeLists)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory

from mtopt_launch.parser import parse_launch_file

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
SETUP = "run: bash scripts/setup.sh"
LAUNCH_FILES = sorted(p.name for p in (REPO_ROOT / "launch").glob("*.launch.yaml"))
# Arguments without a default, per launch file.
REQUIRED_ARGS = {
    "robot_cell.launch.yaml": {"sd_checkpoint": "/data/sd.ckpt"},
    "offline_learning.launch.yaml": {"bag_dir": "/b", "out_dir": "/o"},
}


def source_packages() -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sorted((REPO_ROOT / "src").glob("*/package.xml"))}


def test_venv_is_a_symlink_install_of_every_package():
    index = VENV / "share" / "ament_index" / "resource_index" / "packages"
    for name, source in source_packages().items():
        assert (index / name).is_file(), f"{name} is not in the venv's ament index ({SETUP})"
        # A symlink to the source, or (mtopt_interfaces, installed by its cmake) a copy.
        installed = VENV / "share" / name / "package.xml"
        assert installed.read_bytes() == (source / "package.xml").read_bytes(), name
    share = Path(get_package_share_directory("mtopt_bringup"))
    assert share == VENV / "share" / "mtopt_bringup"
    # Linked, not copied: an edit of launch/ or config/ is what the next launch reads.
    assert (share / "launch").samefile(REPO_ROOT / "launch")
    assert (share / "config").samefile(REPO_ROOT / "config")


def test_venv_lib_holds_each_console_script_of_each_python_package():
    for name, source in source_packages().items():
        if not (source / "setup.py").is_file():
            continue
        try:
            entry_points = distribution(name).entry_points
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed in the venv ({SETUP})")
        scripts = [e.name for e in entry_points if e.group == "console_scripts"]
        for script in scripts:
            program = VENV / "lib" / name / script
            assert program.is_file() and os.access(program, os.X_OK), program
            assert program.samefile(VENV / "bin" / script)


def test_venv_python_finds_packages_without_any_sourcing(tmp_path):
    """The venv's Python puts the venv on AMENT_PREFIX_PATH by itself (a .pth hook), from any
    directory, and keeps what the user set first."""
    code = (
        "import os; from ament_index_python.packages import get_package_share_directory as g; "
        "print(g('mtopt_bringup')); print(os.environ['AMENT_PREFIX_PATH'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    share, prefix_path = out.stdout.splitlines()
    assert share == str(VENV / "share" / "mtopt_bringup") and prefix_path == str(VENV)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(env, AMENT_PREFIX_PATH=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert out.stdout.splitlines()[1] == f"{tmp_path}{os.pathsep}{VENV}"


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_launch_files_read_includes_and_configs_from_the_package_share(launch_file):
    """No launch file reaches into the source tree relative to itself ($(dirname)/..): every
    parameter file comes from `$(find-pkg-share mtopt_bringup)/config`."""
    text = (REPO_ROOT / "launch" / launch_file).read_text()
    assert "$(dirname)" not in text
    share = Path(get_package_share_directory("mtopt_bringup"))
    description = parse_launch_file(share / "launch" / launch_file, REQUIRED_ARGS.get(launch_file))
    files = {f for node in description.nodes for f in node.param_files}
    assert files, launch_file
    assert all(Path(f).parent == share / "config" for f in files), files


def test_colcon_style_cmake_install_of_mtopt_bringup(tmp_path, monkeypatch):
    """src/mtopt_bringup/CMakeLists.txt (ament_cmake, what `colcon build` runs) installs launch/
    and config/ into share/mtopt_bringup; the installed launch files then include each other
    and read their parameter files from that install prefix."""
    cmake = shutil.which("cmake", path=str(VENV / "bin"))
    assert cmake, "cmake is a pinned dependency (requirements.txt)"
    build, install = tmp_path / "build", tmp_path / "install"
    env = dict(
        os.environ, CMAKE_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{os.environ['PATH']}"
    )
    for command in (
        [cmake, "-S", str(REPO_ROOT / "src" / "mtopt_bringup"), "-B", str(build),
         f"-DCMAKE_INSTALL_PREFIX={install}", f"-DPython3_EXECUTABLE={sys.executable}"],
        [cmake, "--build", str(build)],
        [cmake, "--install", str(build)],
    ):  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    share = install / "share" / "mtopt_bringup"
    assert (install / "share/ament_index/resource_index/packages/mtopt_bringup").is_file()
    assert (share / "package.xml").is_file()
    for launch_file in LAUNCH_FILES:
        assert (share / "launch" / launch_file).is_file()
    assert (share / "config" / "sim_cell.yaml").is_file()
    # The install prefix first on AMENT_PREFIX_PATH, as `source install/setup.bash` puts it.
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{install}{os.pathsep}{VENV}")
    description = parse_launch_file(share / "launch" / "sim_cell.launch.yaml", {"cells": "2"})
    collectors = [n for n in description.nodes if n.name == "collector"]
    assert [n.namespace for n in collectors] == ["/cell0", "/cell1"]
    assert all(str(share / "config") in f for n in description.nodes for f in n.param_files)
