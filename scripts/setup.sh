#!/usr/bin/env bash
# One-command, idempotent setup of the MT-Opt workspace:
#   apt packages for headless rendering -> .venv (python3.11) -> pinned pip deps ->
#   mtopt_interfaces (rosidl, cmake/ninja) -> every Python package of src/ in editable mode.
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
req_hash="$(hash_of "$ROOT/requirements.txt")"
if ! stamp_ok requirements "$req_hash"; then
    say "installing pinned dependencies (requirements.txt)"
    "${PIP[@]}" install -r "$ROOT/requirements.txt"
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
for setup_py in "$ROOT"/src/*/setup.py; do
    pkg_dir="$(dirname "$setup_py")"
    name="$(basename "$pkg_dir")"
    files=("$setup_py" "$pkg_dir/package.xml")
    [[ -f "$pkg_dir/setup.cfg" ]] && files+=("$pkg_dir/setup.cfg")
    pkg_hash="$(hash_of "${files[@]}")"
    if ! stamp_ok "pkg-$name" "$pkg_hash"; then
        say "installing $name (editable)"
        "${PIP[@]}" install --no-deps --no-build-isolation -e "$pkg_dir"
        stamp_set "pkg-$name" "$pkg_hash"
    fi
done

say "ready: $VENV"
