#!/usr/bin/env bash
# One-command, idempotent setup of the MT-Opt workspace:
#   apt packages for headless rendering -> .venv (python3.11) -> pinned pip deps ->
#   mtopt_interfaces (rosidl, cmake/ninja) -> every Python package of src/ in editable mode ->
#   every package of src/ registered in the venv's ament index (the colcon install layout).
# Each step is skipped when a stamp keyed on the hash of its inputs says nothing changed,
# so a second run with nothing changed takes a few seconds.
set -euo pipefail
shopt -s nullglob

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MTOPT_VENV:-$ROOT/.venv}"
STAMPS="$VENV/.mtopt-stamps"
PY_VERSION=3.11
APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

hash_of() {  # hash_of FILE_OR_DIR...: content hash of files (sorted, names included)
    find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info*' \
        -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 1. Python 3.11 ---------------------------------------------------------------------------
PYTHON="$(command -v "python$PY_VERSION" || true)"
[[ -n "$PYTHON" ]] || die "python$PY_VERSION not found on PATH. Install Python $PY_VERSION \
(Debian/Ubuntu: apt-get install python$PY_VERSION python$PY_VERSION-venv) and re-run."

# 2. apt packages for headless MuJoCo rendering (EGL / OSMesa) -------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        say "installing apt packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        die "missing apt packages: ${missing[*]}. Run: sudo apt-get install ${missing[*]}"
    fi
fi

# 3. venv ----------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 4. pinned dependencies -------------------------------------------------------------------
# uv installs the same pinned wheels in less time than pip (measured beside other jobs, in a new
# venv: requirements.txt 13 s without bytecode, 57 s with it, against 92 s with pip; the
# editable packages of src/ 16 s against 26 s).
# It does not read pip's configuration, so it gets pip's index, extra indexes, find-links and
# certificate; when anything fails, pip does the install.
UV_VERSION=0.13.9
install_with_uv() {  # install_with_uv PIP_INSTALL_ARGS...: 0 when uv installed everything
    [[ "$("$VENV/bin/uv" --version 2>/dev/null)" == "uv $UV_VERSION "* ]] \
        || "${PIP[@]}" install "uv==$UV_VERSION" >/dev/null 2>&1 || return 1
    local lines  # pip's certificate (may be empty), then uv's index options, one per line
    mapfile -t lines < <("$VENV/bin/python" - <<'PY'
import subprocess
import sys

listed = subprocess.run(
    [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
).stdout
config = {}
for line in listed.splitlines():  # the environment's entries come first and win, as in pip
    key, _, value = line.partition("=")
    config.setdefault(key.rpartition(".")[2], value.strip().strip("'\""))
print(config.get("cert", ""))
print("--index-url", config.get("index-url", "https://pypi.org/simple"), sep="\n")
for key, flag in (("extra-index-url", "--extra-index-url"), ("find-links", "--find-links")):
    for value in config.get(key, "").split():
        print(flag, value, sep="\n")
PY
    )
    ((${#lines[@]} > 2)) || return 1
    local cert="${lines[0]}"
    env ${cert:+SSL_CERT_FILE="$cert"} "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" \
        --index-strategy unsafe-best-match "${lines[@]:1}" "$@"
}
req_hash="$(hash_of "$ROOT/requirements.txt")"
if ! stamp_ok requirements "$req_hash"; then
    say "installing pinned dependencies (requirements.txt)"
    # No bytecode at install (uv's default): compiling every module of torch & co. took 44 s of
    # a 57 s install (measured); the Makefile lets Python cache what is imported instead.
    if ! install_with_uv -r "$ROOT/requirements.txt"; then
        say "uv did not install them; installing with pip"
        "${PIP[@]}" install -r "$ROOT/requirements.txt"
    fi
    # The ROS wheels' CMake files carry the include paths of the machine they were built on;
    # point them at this venv's Python and numpy headers (idempotent).
    py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
    { grep -rlE '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null || true; } \
        | xargs -r sed -i \
            -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
            -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g"
    stamp_set requirements "$req_hash"
    rm -f "$STAMPS"/interfaces "$STAMPS"/pkg-*  # rebuild what depends on the deps
fi

# 5. mtopt_interfaces (rosidl) -------------------------------------------------------------
ifc_hash="$(hash_of "$ROOT/src/mtopt_interfaces")"
if ! stamp_ok interfaces "$ifc_hash"; then
    say "building mtopt_interfaces"
    build="$ROOT/build/mtopt_interfaces"
    mkdir -p "$ROOT/build"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    "$VENV/bin/cmake" -S "$ROOT/src/mtopt_interfaces" -B "$build" -G Ninja \
        -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$VENV" \
        -DPython3_EXECUTABLE="$VENV/bin/python" >"$build.log" 2>&1 \
        || { tail -30 "$build.log"; die "cmake configure of mtopt_interfaces failed ($build.log)"; }
    { "$VENV/bin/cmake" --build "$build" && "$VENV/bin/cmake" --install "$build"; } \
        >>"$build.log" 2>&1 \
        || { tail -30 "$build.log"; die "build of mtopt_interfaces failed ($build.log)"; }
    "$VENV/bin/python" -c "from mtopt_interfaces.msg import EpisodeInfo" \
        || die "mtopt_interfaces built but does not import"
    stamp_set interfaces "$ifc_hash"
fi

# 6. Python packages of src/ (editable, with console scripts) ------------------------------
# The changed ones go to one pip call: one start of pip instead of one per package.
changed_dirs=()
changed_stamps=()
for setup_py in "$ROOT"/src/*/setup.py; do
    pkg_dir="$(dirname "$setup_py")"
    name="$(basename "$pkg_dir")"
    files=("$setup_py" "$pkg_dir/package.xml")
    [[ -f "$pkg_dir/setup.cfg" ]] && files+=("$pkg_dir/setup.cfg")
    pkg_hash="$(hash_of "${files[@]}")"
    if ! stamp_ok "pkg-$name" "$pkg_hash"; then
        changed_dirs+=(-e "$pkg_dir")
        changed_stamps+=("pkg-$name=$pkg_hash")
    fi
done
if ((${#changed_stamps[@]})); then
    say "installing ${#changed_stamps[@]} packages of src/ (editable)"
    if ! install_with_uv --no-deps --no-build-isolation "${changed_dirs[@]}"; then
        "${PIP[@]}" install --no-deps --no-build-isolation "${changed_dirs[@]}"
    fi
    for entry in "${changed_stamps[@]}"; do
        stamp_set "${entry%%=*}" "${entry#*=}"
    done
fi

# 7. ament index: the venv as a colcon install prefix ----------------------------------------
# `colcon build --symlink-install` would give each package of src/ a marker in
# share/ament_index/resource_index/packages, its package.xml in share/<pkg>, its console
# scripts in lib/<pkg> (where `ros2 launch` / mtopt-launch look for a node's `exec`) and, for
# mtopt_bringup, the workspace's launch/ and config/ in share/mtopt_bringup (see its
# CMakeLists.txt). The same layout is made here, with symlinks so edits show at once.
# mtopt_interfaces is left alone: its cmake install (step 5) registered it already.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
INDEX="$VENV/share/ament_index/resource_index/packages"
REGISTERED="$STAMPS/ament-registered"  # the packages this step registered, one a line
index_inputs=("${BASH_SOURCE[0]}")
for pkg_dir in "$ROOT"/src/*/; do
    for f in package.xml setup.py setup.cfg; do
        [[ -f "$pkg_dir$f" ]] && index_inputs+=("$pkg_dir$f")
    done
done
index_hash="$( (hash_of "${index_inputs[@]}"; echo "$ROOT") | sha256sum | cut -c1-16)"
if ! stamp_ok ament-index "$index_hash" || [[ ! -e "$VENV/share/mtopt_bringup/launch" ]]; then
    say "registering the packages of src/ in the venv's ament index"
    mkdir -p "$INDEX"
    registered=()
    for xml in "$ROOT"/src/*/package.xml; do
        pkg_dir="$(dirname "$xml")"
        name="$(basename "$pkg_dir")"
        grep -q "<name>$name</name>" "$xml" || die "$xml: <name> is not the directory name $name"
        if grep -q '<build_type>ament_python</build_type>' "$xml"; then
            : # below
        elif [[ "$name" != mtopt_bringup ]]; then
            continue  # built and installed by cmake
        fi
        touch "$INDEX/$name"
        mkdir -p "$VENV/share/$name"
        ln -sfn "$xml" "$VENV/share/$name/package.xml"
        registered+=("$name")
        if [[ "$name" == mtopt_bringup ]]; then
            for dir in launch config; do
                target="$VENV/share/$name/$dir"
                [[ -L "$target" || ! -e "$target" ]] || rm -rf "$target"  # a copied install
                ln -sfn "$ROOT/$dir" "$target"
            done
            continue
        fi
        mapfile -t scripts < <("$VENV/bin/python" -c '
import sys
from importlib.metadata import distribution
for ep in distribution(sys.argv[1]).entry_points:
    if ep.group == "console_scripts":
        print(ep.name)
' "$name")
        for exe in "${scripts[@]}"; do
            if [[ ! -x "$VENV/bin/$exe" ]]; then
                # A script that moved between two packages is deleted from bin when pip
                # reinstalls the package it left; installing the new owner again restores it.
                say "reinstalling $name (its console script $exe is missing)"
                "${PIP[@]}" install --no-deps --no-build-isolation -e "$pkg_dir"
                break
            fi
        done
        lib="$VENV/lib/$name"
        mkdir -p "$lib"
        find "$lib" -maxdepth 1 -type l -delete  # console scripts that no longer exist
        for exe in "${scripts[@]}"; do
            [[ -x "$VENV/bin/$exe" ]] || die "console script $exe of $name is not in $VENV/bin"
            ln -sfn "$VENV/bin/$exe" "$lib/$exe"
        done
        rmdir --ignore-fail-on-non-empty "$lib"  # no console scripts: no lib/<pkg>, as colcon
    done
    # Packages registered before but gone from src/ now.
    if [[ -f "$REGISTERED" ]]; then
        while read -r old; do
            [[ -n "$old" && ! " ${registered[*]} " =~ " $old " ]] || continue
            say "unregistering $old (no longer in src/)"
            rm -rf "${INDEX:?}/$old" "${VENV:?}/share/$old" "${VENV:?}/lib/$old"
        done < "$REGISTERED"
    fi
    printf '%s\n' "${registered[@]}" > "$REGISTERED"
    # ament_index_python finds packages only through AMENT_PREFIX_PATH, which a colcon
    # workspace gets from `source install/setup.bash`. A venv has no such step, so a .pth
    # hook (run by every start of the venv's Python, before any user code) appends the venv
    # to AMENT_PREFIX_PATH when it is not there yet; an AMENT_PREFIX_PATH set by the user
    # keeps its entries and their order. Child processes (the nodes) inherit it.
    cat > "$SITE/mtopt_ament_prefix.py" <<'PY'
"""Puts this venv on AMENT_PREFIX_PATH (installed by scripts/setup.sh, loaded by a .pth).

ament_index_python (`get_package_share_directory`, `$(find-pkg-share)`, node lookup) reads
only AMENT_PREFIX_PATH; the venv is the install prefix of the workspace's packages.
"""

import os
import sys

_entries = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
if not any(os.path.realpath(p) == os.path.realpath(sys.prefix) for p in _entries):
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([*_entries, sys.prefix])
PY
    echo "import mtopt_ament_prefix" > "$SITE/mtopt_ament_prefix.pth"
    env -u AMENT_PREFIX_PATH "$VENV/bin/python" -c '
from ament_index_python.packages import get_package_share_directory as share
import os, sys
launch = os.path.join(share("mtopt_bringup"), "launch")
sys.exit(0 if os.path.isdir(launch) else f"{launch} is not a directory")' \
        || die "the venv's ament index does not resolve mtopt_bringup"
    stamp_set ament-index "$index_hash"
fi

say "ready: $VENV"
