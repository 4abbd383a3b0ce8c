"""scripts/render_demo_docs.py: copies a demo run's picture into the docs folder, and refuses a
directory that is not a demo run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "render_demo_docs.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_copies_the_run_picture(tmp_path):
    run = tmp_path / "runs" / "20261206-010000"
    run.mkdir(parents=True)
    (run / "demo.png").write_bytes(b"\x89PNG picture")
    (run / "summary.md").write_text("# summary\n")
    docs = tmp_path / "docs"
    result = _run("--run", str(run), "--docs", str(docs))
    assert result.returncode == 0, result.stderr
    assert (docs / "demo.png").read_bytes() == b"\x89PNG picture"


def test_refuses_a_directory_without_a_demo_picture(tmp_path):
    docs = tmp_path / "docs"
    result = _run("--run", str(tmp_path), "--docs", str(docs))
    assert result.returncode != 0
    assert "has no demo.png" in result.stderr
    assert not docs.exists()
