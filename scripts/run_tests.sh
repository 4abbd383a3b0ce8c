#!/usr/bin/env bash
# `make test`: the suite in three pytest sessions (see test/conftest.py). The computation tests
# on WORKERS pytest-xdist workers; the `timed` ones (ROS graphs, signals, timed waits) on as
# many workers, a whole module per worker, each in its own ROS domain; last the `exclusive`
# ones one at a time. All three always run; the exit status is non-zero when any failed.
# Usage: scripts/run_tests.sh PYTHON WORKERS [PYTEST_ARGS...]
set -uo pipefail
python="$1"
workers="$2"
shift 2
status=0
run() {
    "$python" -m pytest "$@"
    local code=$?
    ((code == 5)) && code=0  # nothing selected (e.g. -k matching only another session)
    ((code)) && status=$code
}
run -n "$workers" -m "not timed and not exclusive" "$@"
run -n "$workers" --dist loadfile -m "timed and not exclusive" "$@"
run -m exclusive "$@"
exit $status
