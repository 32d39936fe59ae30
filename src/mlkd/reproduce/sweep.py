"""``mlkd sweep``: train every run of a grid once, resumably, teachers before their students.

Each run is ``fit(config)`` in its own folder (``resume=True`` once it has a checkpoint), so a
sweep that is stopped (Ctrl-C, a crash, a time limit) and started again skips the finished runs
(their ``metrics.jsonl`` ends with the last scheduled epoch, evaluated) without loading
anything, resumes the interrupted one from its last good checkpoint and trains the rest. A
finished run whose saved config differs
from the grid's (other than paths, device, logging and ``optim.stop_epoch``) is an error rather
than a silently reused result: pick another ``--out`` or restore the grid.
Each run folder also gets ``experiment.json`` (role, dataset, models, method, row label, seed),
which ``mlkd table`` reads. A process runs the runs one after another; several processes may
share a grid (one per GPU, or per machine on a shared filesystem): each run folder is locked
while it trains (``mlkd.engine.runlock``), a process skips the runs another one holds (``busy``)
and their students (``blocked``), and a rerun picks up whatever remains.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from mlkd.config import REUSABLE_KEYS, config_differences
from mlkd.engine.preemption import StopRequest, stop_on_signals
from mlkd.engine.runlock import lock_holder, run_lock
from mlkd.errors import ConfigError, Preempted, RunBusyError
from mlkd.reproduce.grid import Grid, RunSpec
from mlkd.runrecord import EXPERIMENT_FILE, METRICS_FILE, RunRecord

log = logging.getLogger("mlkd")


def run_status(run: RunSpec) -> str:
    """``done``, ``partial`` (a checkpoint, not finished) or ``todo``; ConfigError when a
    finished run was trained with another config."""
    record = RunRecord.last(run.run_dir)
    if record is not None and record.finished(run.config.optim.final_epoch):
        saved = run.run_dir / "config.yaml"
        if saved.is_file():
            changed = config_differences(yaml.safe_load(saved.read_text()) or {}, run.config.to_dict(), REUSABLE_KEYS)
            if changed:
                raise ConfigError(
                    f"{run.run_dir} is finished but was trained with another config ({', '.join(changed)} "
                    f"differ from the grid's); sweep into another --out, or delete that run folder"
                )
        return "done"
    if (run.run_dir / "checkpoints" / "last.pt").exists() or (run.run_dir / "checkpoints" / "prev.pt").exists():
        return "partial"
    return "todo"


def write_experiment(run: RunSpec) -> None:
    """Write ``experiment.json`` (atomically) into the run folder."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    path = run.run_dir / EXPERIMENT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(run.identity, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _sync_metrics(run: RunSpec) -> None:
    """If a crash fell between the last checkpoint and metrics.jsonl, rewrite the latter."""
    record = RunRecord.last(run.run_dir)
    if record is not None and record.epoch == run.config.optim.final_epoch:
        return
    from mlkd.engine.checkpoint import load_latest
    from mlkd.engine.logs import write_jsonl

    state = load_latest(run.run_dir / "checkpoints")
    if state is not None and state.get("history"):
        write_jsonl(state["history"], run.run_dir / METRICS_FILE)


@dataclass
class SweepReport:
    """What a sweep did: run folder -> skipped | trained | failed | busy (another process is
    training it) | blocked (its teacher failed or was busy)."""

    status: dict[Path, str] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: bool = False  # max_runs reached

    def count(self, what: str) -> int:
        return sum(1 for value in self.status.values() if value == what)

    def summary(self) -> str:
        parts = [f"{self.count(k)} {k}" for k in ("trained", "skipped", "failed", "busy", "blocked") if self.count(k)]
        text = f"sweep: {', '.join(parts) or 'nothing to do'} in {self.seconds:.0f} s"
        if self.stopped_early:
            text += " (stopped at --max-runs; run the sweep again to continue)"
        if self.count("busy"):
            text += " (busy runs are being trained by another process; rerun the sweep once they finish)"
        for run_dir, error in self.errors.items():
            text += f"\n  failed: {run_dir}: {error}"
        return text


def run_sweep(
    grid: Grid, keep_going: bool = False, max_runs: Optional[int] = None, fit_fn: Optional[Callable[..., dict]] = None
) -> SweepReport:
    """Train the grid's runs in order (teachers first). Finished runs are skipped.

    keep_going: log a failed run and go on (its students are ``blocked``) instead of raising.
    max_runs: train at most this many runs in this call (then stop; a rerun continues).
    fit_fn: the training function (default ``mlkd.engine.trainer.fit``).
    """
    if grid.missing:
        keys = ", ".join(grid.missing)
        raise ConfigError(
            f"{grid.path}: set {keys} first, e.g. mlkd sweep {grid.path} "
            + " ".join(f"{key}=/path" for key in grid.missing)
        )
    if max_runs is not None and max_runs < 1:
        raise ConfigError(f"--max-runs {max_runs}: must be 1 or more (leave it out to train every run)")
    if fit_fn is None:
        from mlkd.engine.trainer import fit as fit_fn
    report = SweepReport()
    start = time.perf_counter()
    try:
        with stop_on_signals() as stop:
            _run_all(grid, report, fit_fn, keep_going, max_runs, stop)
    finally:
        report.seconds = time.perf_counter() - start
    return report


def _run_all(
    grid: Grid,
    report: SweepReport,
    fit_fn: Callable[..., dict],
    keep_going: bool,
    max_runs: Optional[int],
    stop: StopRequest,
) -> None:
    """The sweep's loop; a stop signal between runs (``stop``) ends it with Preempted."""
    failed: set[Path] = set()
    trained = 0
    for index, run in enumerate(grid.runs, 1):
        if stop.signum is not None:
            stop.handled = True
            raise Preempted(
                f"stopped by {stop.name} before run {index} of {len(grid.runs)} (the runs "
                "before it are finished): rerun the sweep to continue"
            )
        where = f"[{index}/{len(grid.runs)}] {run.role} {run.label} {run.model} seed {run.seed}"
        if run.teacher_run is not None and run.teacher_run in failed:
            report.status[run.run_dir] = "blocked"
            failed.add(run.run_dir)
            continue
        if max_runs is not None and trained >= max_runs and run_status(run) != "done":
            report.stopped_early = True
            break
        try:
            with run_lock(run.run_dir):  # held from the status check to the end of training
                outcome = _train_one(run, where, fit_fn, keep_going, report)
        except RunBusyError as err:
            log.warning("%s: %s; skipped, rerun the sweep once it is done", where, err)
            outcome = "busy"
        report.status[run.run_dir] = outcome
        if outcome in ("failed", "busy"):
            failed.add(run.run_dir)
        trained += outcome == "trained"


def _train_one(run: RunSpec, where: str, fit_fn: Callable[..., dict], keep_going: bool, report: SweepReport) -> str:
    """Train (or resume) one run unless it is finished: ``skipped`` | ``trained`` | ``failed``."""
    status = run_status(run)
    if status == "done":
        log.info("%s: finished, skipped (%s)", where, run.run_dir)
        return "skipped"
    log.info("%s: %s (%s)", where, "resuming" if status == "partial" else "training", run.run_dir)
    write_experiment(run)
    try:
        fit_fn(run.config, resume=status == "partial")
        _sync_metrics(run)
    except Exception as err:  # noqa: BLE001 - reported, or re-raised below
        if not keep_going or isinstance(err, Preempted):  # a pre-empted job stops the whole sweep
            log.error("%s failed (%s); the sweep stops here, rerun it to resume", where, run.run_dir)
            raise
        log.error("%s failed: %s: %s", where, type(err).__name__, err)
        report.errors[run.run_dir] = f"{type(err).__name__}: {err}"
        return "failed"
    return "trained"


def format_plan(grid: Grid) -> str:
    """The dry run: the experiments, then every run with its status, in training order."""
    n_exp = len(grid.experiments)
    lines = [
        f"grid {grid.path}: dataset {grid.dataset}, {len(grid.pairs)} pair(s) x {len(grid.methods)} method(s) "
        f"x {len(grid.seeds)} seed(s) = {n_exp} experiments -> {len(grid.runs)} runs in {grid.out} "
        f"(teachers {grid.teachers.replace('_', ' ')}; one vanilla student per model and seed)",
        "pairs: " + ", ".join(p.label for p in grid.pairs),
        "methods: " + ", ".join(m.label for m in grid.methods),
        "seeds: " + ", ".join(str(s) for s in grid.seeds),
    ]
    if grid.paper:
        lines.append(f"paper: {grid.paper} (mlkd table --paper {grid.paper})")
    if grid.missing:
        lines.append("required before training: " + ", ".join(f"{k}=..." for k in grid.missing))
    header = ("#", "status", "role", "row", "model", "seed", "epochs", "run folder", "serves")
    rows = []
    for index, run in enumerate(grid.runs, 1):
        holder = lock_holder(run.run_dir)
        try:
            status = f"busy ({holder})" if holder else run_status(run)
        except ConfigError:
            status = "CONFLICT"
        epochs = f"{run.config.optim.final_epoch}/{run.config.optim.epochs}"
        rows.append(
            (
                str(index),
                status,
                run.role,
                run.label,
                run.model,
                str(run.seed),
                epochs,
                str(run.run_dir),
                ", ".join(run.pairs),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)
