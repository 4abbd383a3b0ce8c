"""`python -m mtopt_sim.docs --out DIR` renders every picture of docs/sim within its size cap."""

import subprocess
import sys

from mtopt_sim.docs import MAX_BYTES


def test_docs_cli_renders_every_picture(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mtopt_sim.docs", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"cameras.png", "pick.gif", "place.gif", "bin_reset.gif", "cells_0_to_6.png"} <= names
    assert all(0 < p.stat().st_size <= MAX_BYTES for p in tmp_path.iterdir())
