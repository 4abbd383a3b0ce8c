"""Package lookups through the ament index, as ros2 launch / launch_ros do them.

A package is installed in the first prefix on AMENT_PREFIX_PATH that holds the marker
`share/ament_index/resource_index/packages/<pkg>` (ament_index_python). From that prefix:

    share directory   <prefix>/share/<pkg>          $(find-pkg-share PKG)
    executables       <prefix>/lib/<pkg>/<exec>     a node's `pkg` + `exec`
    launch file       the one file named FILE anywhere under the share directory
                      (`ros2 launch PKG FILE`; none or several is an error)

In this repository's venv, scripts/setup.sh registers the packages of src/ and a .pth hook puts
the venv on AMENT_PREFIX_PATH; a colcon workspace gets it from `source install/setup.bash`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from ament_index_python.search_paths import get_search_paths

from mtopt_launch.description import LaunchError


class PackageLookupError(LaunchError):
    """A package, or a file of a package, is not where the ament index says it should be."""


def find_package_prefix(package: str) -> Path:
    """Install prefix of `package`. Raises PackageLookupError naming the package."""
    try:
        return Path(get_package_prefix(package))
    except PackageNotFoundError:
        searched = ", ".join(get_search_paths()) or "no existing directory"
        raise PackageLookupError(
            f"package '{package}' not found in the ament index (searched AMENT_PREFIX_PATH: "
            f"{searched}); is it built and installed (here: bash scripts/setup.sh), and its "
            "install prefix on AMENT_PREFIX_PATH?"
        ) from None
    except ValueError as exc:  # an invalid package name (REP 127)
        raise PackageLookupError(str(exc)) from None
    except OSError as exc:  # AMENT_PREFIX_PATH unset or empty
        raise PackageLookupError(f"cannot look up package '{package}': {exc}") from None


def find_package_share(package: str) -> Path:
    """`<prefix>/share/<package>`: what `$(find-pkg-share package)` evaluates to."""
    share = find_package_prefix(package) / "share" / package
    if not share.is_dir():
        raise PackageLookupError(
            f"package '{package}' is registered in the ament index but its share "
            f"directory {share} does not exist"
        )
    return share


def find_package_executable(package: str, executable: str) -> Path:
    """`<prefix>/lib/<package>/<executable>`, as launch_ros finds a node's program."""
    if not executable or "/" in executable:
        raise PackageLookupError(f"invalid executable name {executable!r} of package '{package}'")
    libexec = find_package_prefix(package) / "lib" / package
    candidate = libexec / executable
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    present = sorted(p.name for p in libexec.iterdir()) if libexec.is_dir() else []
    raise PackageLookupError(
        f"no executable '{executable}' in {libexec}"
        + (f" (it has: {', '.join(present)})" if present else " (no executables there)")
    )


def find_launch_file(package: str, file_name: str) -> Path:
    """The launch file `file_name` of `package`, as `ros2 launch PKG FILE` finds it: the one
    file with exactly that name anywhere under the package's share directory."""
    if not file_name or "/" in file_name:
        raise PackageLookupError(
            f"{file_name!r} is not a file name: give the name of a launch file of package "
            f"'{package}' (e.g. sim_cell.launch.yaml), or a path to a launch file alone"
        )
    share = find_package_share(package)
    matches = sorted(_files_named(share, file_name))
    if not matches:
        raise PackageLookupError(
            f"file '{file_name}' was not found in the share directory of package "
            f"'{package}' which is at '{share}'"
        )
    if len(matches) > 1:
        raise PackageLookupError(
            f"file '{file_name}' was found more than once in the share directory of package "
            f"'{package}': " + ", ".join(f"'{m}'" for m in matches)
        )
    return matches[0]


def _files_named(root: Path, file_name: str) -> list[Path]:
    """Every file called `file_name` below `root`. Directory symlinks are followed (a symlink
    install may link whole directories), each real directory once."""
    found, seen = [], set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs.clear()
            continue
        seen.add(real)
        if file_name in files and (Path(directory) / file_name).is_file():
            found.append(Path(directory) / file_name)
    return found
