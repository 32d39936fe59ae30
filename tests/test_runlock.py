"""One process per run folder: a second process is refused (fit) or skips the run (sweep);
a killed holder leaves no stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest

from engine_helpers import tiny_config
from mlkd.engine.trainer import fit
from mlkd.errors import RunBusyError
from mlkd.reproduce.grid import load_grid
from mlkd.reproduce.sweep import format_plan, run_status, run_sweep
from test_reproduce_sweep import write_grid

pytestmark = pytest.mark.slow  # subprocesses / torchrun

HOLD = (
    "import sys, time\nfrom mlkd.engine.runlock import run_lock\n"
    "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)\n"
)


@contextmanager
def held_by_another_process(run_dir):
    """Yield the pid of a child process holding ``run_dir``'s lock; SIGKILL it on exit."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        yield child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_fit_refuses_a_run_folder_another_process_trains(tmp_path):
    cfg = tiny_config(tmp_path / "run", tmp_path / "cache", epochs=1)
    with held_by_another_process(tmp_path / "run") as pid:
        with pytest.raises(RunBusyError, match=f"run is being trained by another process \\(pid {pid} on "):
            fit(cfg)
        assert not (tmp_path / "run" / "checkpoints").exists()
    # The holder was SIGKILLed: the kernel released its lock, nothing stale remains.
    assert fit(cfg)["epoch"] == 1


def test_sweep_skips_busy_runs_and_their_students_then_a_rerun_finishes(tmp_path):
    grid = load_grid(write_grid(tmp_path, tmp_path / "cache", methods=["teacher", "mld"]))
    teacher0, student0, teacher1, student1 = grid.runs
    assert (teacher0.role, student0.role, teacher1.seed) == ("teacher", "distill", 1)
    with held_by_another_process(teacher0.run_dir) as pid:
        assert f"busy (pid {pid} on " in format_plan(grid)  # the dry run shows who trains it
        report = run_sweep(grid)
    assert [report.status[r.run_dir] for r in grid.runs] == ["busy", "blocked", "trained", "trained"]
    assert "1 busy" in report.summary() and "rerun the sweep once they finish" in report.summary()
    assert [run_status(r) for r in grid.runs] == ["todo", "todo", "done", "done"]
    assert "busy (" not in format_plan(grid)  # the holder is gone: no stale lock
    report = run_sweep(grid)
    assert [report.status[r.run_dir] for r in grid.runs] == ["trained", "trained", "skipped", "skipped"]
