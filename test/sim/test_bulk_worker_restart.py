"""`mtopt-sim-collect` survives a killed worker process: the dead worker is started again for
its cell's remaining episodes (new seeds, its `.part` leftovers removed), at most
--max-restarts times per cell; an error a worker reports still fails the run at once.

The restart policy is tested on `_run_processes` with stub workers (a module written to
tmp_path: spawn children import it from there, and it imports nothing heavy); the whole
command with a real SIGKILL of a real worker."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mtopt_core.episode_bag import list_episode_bags
from mtopt_core.tasks import load_task_registry
from mtopt_learner.episode_decoder import episode_from_bag
from mtopt_sim import bulk_collect
from mtopt_sim.bulk_cell import BulkCollectError
from mtopt_sim.bulk_collect import CollectConfig, _run_processes

CLI = [sys.executable, "-m", "mtopt_sim.bulk_collect"]

STUBS = textwrap.dedent(
    """
    import os
    import signal
    from dataclasses import dataclass


    @dataclass(frozen=True)
    class Spec:
        cell_id: int
        lives: int  # episodes this worker reports before it kills itself (SIGKILL)


    def mortal(spec, episodes, conn, log_level, parent):
        for n in range(min(spec.lives, episodes)):
            conn.send(("episode", spec.cell_id, {"cell": spec.cell_id, "n": n}))
        if episodes > spec.lives:
            os.kill(os.getpid(), signal.SIGKILL)
        conn.send(("done", spec.cell_id, None))


    def failing(spec, episodes, conn, log_level, parent):
        conn.send(("error", spec.cell_id, "cell 4: 3 episodes in a row not logged"))
    """
)


@pytest.fixture
def stubs(tmp_path, monkeypatch):
    (tmp_path / "bulk_stub_workers.py").write_text(STUBS)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawn children get the parent's sys.path
    module = importlib.import_module("bulk_stub_workers")
    yield module
    sys.modules.pop("bulk_stub_workers", None)


def test_a_killed_worker_is_started_again_for_its_remaining_episodes(stubs, caplog):
    records, asked = [], []

    def restart(spec):
        asked.append(spec)
        return stubs.Spec(spec.cell_id, lives=99), 5 - 2  # 2 of its 5 were reported

    jobs = [(stubs.Spec(4, lives=2), 5), (stubs.Spec(5, lives=99), 3)]
    with caplog.at_level(logging.WARNING, logger="mtopt_sim.bulk"):
        restarts = _run_processes(
            jobs, lambda cell, r: records.append((cell, r["n"])), restart, target=stubs.mortal
        )
    assert restarts == 1 and asked == [stubs.Spec(4, lives=2)]  # only the dead one
    assert sorted(records) == [(4, 0), (4, 0), (4, 1), (4, 1), (4, 2), (5, 0), (5, 1), (5, 2)]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "worker of cell 4 died (killed by SIGKILL); started again (restart 1/3)" in warning
    assert "its 3 remaining episode(s)" in warning


def test_a_worker_dying_again_and_again_fails_the_run_naming_the_cell(stubs, caplog):
    asked = []

    def restart(spec):
        asked.append(spec)
        return spec, 4

    warnings = caplog.at_level(logging.WARNING, logger="mtopt_sim.bulk")
    with warnings, pytest.raises(BulkCollectError) as failed:
        _run_processes([(stubs.Spec(7, lives=0), 4)], lambda c, r: None, restart, 2,
                       target=stubs.mortal)  # fmt: skip
    assert str(failed.value).startswith(
        "worker of cell 7 died (killed by SIGKILL) after 2 restart(s); giving up"
    )
    assert len(asked) == 3  # its leftovers removed after every death
    assert [m for m in caplog.messages if "started again" in m] == [
        f"mtopt-sim-collect: worker of cell 7 died (killed by SIGKILL); started again"
        f" (restart {k}/2) for its 4 remaining episode(s)"
        for k in (1, 2)
    ]


def test_an_error_a_worker_reports_fails_the_run_without_a_restart(stubs):
    def restart(spec):
        raise AssertionError("a reported error is not a crash")

    with pytest.raises(BulkCollectError, match=r"worker of cell 4 failed: cell 4: 3 episodes"):
        _run_processes([(stubs.Spec(4, lives=0), 2)], lambda c, r: None, restart,
                       target=stubs.failing)  # fmt: skip


def spawn_workers(pid: int) -> list[int]:
    """Children of `pid` that run multiprocessing's spawn_main (not its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def test_a_bag_a_killed_worker_completed_but_never_reported_counts(tmp_path, monkeypatch):
    out = tmp_path / "eps"

    def complete_bag(name: str) -> None:
        (out / name).mkdir(parents=True)
        (out / name / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")

    def killed_between_rename_and_report(jobs, on_record, restart, *args) -> int:
        ((spec, _),) = jobs
        complete_bag(f"cell{spec.cell_id}_20260101T000000_lost_00001")  # its report is lost
        return 1

    complete_bag("cell0_20260101T000000_done_00000")
    monkeypatch.setattr(bulk_collect, "_run_processes", killed_between_rename_and_report)
    cfg = CollectConfig(episodes=2, out=out, workers=1, progress=False)
    summary = bulk_collect.collect(cfg).summary
    assert (summary["existing_before"], summary["collected"], summary["total"]) == (1, 1, 2)
    assert summary["unreported"] == 1 and summary["episodes_by_kind"] == {}


def test_the_command_survives_a_sigkilled_worker(tmp_path):
    out, wanted = tmp_path / "eps", 30
    proc = subprocess.Popen(
        [*CLI, "--episodes", str(wanted), "--workers", "2", "--out", str(out), "--no-progress",
         "--max-steps", "3", "--camera-size", "32"],  # short episodes: a short test
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(list_episode_bags(out)) < 2:  # the workers are collecting
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        victim = spawn_workers(proc.pid)[0]
        parts_before = {p.name for p in out.glob("*.part")}
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["worker_restarts"] >= 1 and summary["total"] == wanted, summary
    assert stderr.count("started again (restart 1/3)") == summary["worker_restarts"], stderr
    assert "died (killed by SIGKILL)" in stderr and "Traceback" not in stderr, stderr
    bags = list_episode_bags(out)
    names = [b.name for b in bags]
    assert len(names) == wanted == len(set(names)) and not list(out.glob("*.part"))
    assert not parts_before & {p.name for p in out.iterdir()}  # the killed episode is gone
    # The restarted worker continued with new scenes (seeds of a resumed run): no repeats.
    registry = load_task_registry()
    decoded = [episode_from_bag(b, registry, "oracle") for b in bags]
    assert all(d.usable for d in decoded)
    assert len({tuple(d.episode.actions.ravel()) for d in decoded}) == wanted
