#!/usr/bin/env bash
# `make test`: the suite in two pytest sessions (see test/conftest.py). First the computation
# tests on WORKERS pytest-xdist workers, then the `serial` ones (ROS graphs, signals, timed
# waits) one at a time. Both always run; the exit status is non-zero when either failed.
# Usage: scripts/run_tests.sh PYTHON WORKERS [PYTEST_ARGS...]
set -uo pipefail
python="$1"
workers="$2"
shift 2
status=0
run() {
    "$python" -m pytest "$@"
    local code=$?
    ((code == 5)) && code=0  # nothing selected (e.g. -k matching only the other session)
    ((code)) && status=$code
}
run -n "$workers" -m "not serial" "$@"
run -m serial "$@"
exit $status
