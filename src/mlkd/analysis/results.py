"""Result tables from run folders: rows = methods, columns = (teacher -> student) x metrics.

A run folder is any folder holding ``config.yaml`` and ``metrics.jsonl`` (what ``fit`` writes).
Its place in the table comes from ``experiment.json`` (written by ``mlkd sweep``) or, for
other runs, from its config: ``distill.method`` gives the row (``vanilla`` runs are the
"Student" row, or the "Teacher" row when another run was distilled from their checkpoint),
``model.name`` the student, and the teacher run's config the teacher. Only finished runs count
(the last record is the last scheduled epoch, with an evaluation); the value of a run is its
last epoch's metric under the named protocol, in percent. A cell aggregates the seeds of one
(row, pair): mean and sample standard deviation (ddof = 1; none for a single seed) and n.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import yaml

from mlkd.errors import ConfigError
from mlkd.metrics import HEADLINE_METRICS
from mlkd.runrecord import EXPERIMENT_FILE, METRICS_FILE, RunRecord, final_epoch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    """One column group: a (teacher, student) pair on a dataset; either side may be None for a
    run that belongs to no pair."""

    dataset: str
    teacher: Optional[str]
    student: Optional[str]

    @property
    def label(self) -> str:
        if self.teacher and self.student:
            return f"{self.teacher}->{self.student}"
        return f"teacher {self.teacher}" if self.teacher else f"student {self.student}"


@dataclass
class Cell:
    """The per-seed values (in %) of one (row, column, metric)."""

    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1); NaN for fewer than two seeds."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan


@dataclass
class ResultTable:
    """Rows x (columns x metrics) of cells, optionally with published values beside them."""

    title: str
    protocol: str
    columns: list[Column]
    rows: list[str]
    metrics: tuple = HEADLINE_METRICS
    cells: dict = field(default_factory=dict)  # (row, column index, metric) -> Cell
    paper: dict = field(default_factory=dict)  # (row, column index, metric) -> float | None
    paper_id: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    published: bool = False  # the table IS the paper's (its values are published numbers)
    paired_with: Optional[str] = None  # the cells are per-seed differences to this row

    def cell(self, row: str, column: int, metric: str) -> Cell:
        return self.cells.get((row, column, metric)) or Cell()

    @property
    def typical_n(self) -> int:
        """The most common number of seeds over non-empty cells (0 when empty)."""
        counts = [c.n for c in self.cells.values() if c.n]
        return max(set(counts), key=counts.count) if counts else 0

    def best(self, column: int, metric: str, paper: bool = False) -> float:
        """The best (largest) mean of the column, rounded to 2 decimals, rows other than Teacher."""
        values = []
        for row in self.rows:
            if row == "Teacher":
                continue
            value = self.paper.get((row, column, metric)) if paper else self.cell(row, column, metric).mean
            if value is not None and not math.isnan(value):
                values.append(round(value, 2))
        return max(values) if values else math.nan


@dataclass
class RunResult:
    """One run folder as a table entry."""

    run_dir: Path
    role: str  # teacher | student | distill
    dataset: str
    model: str
    method: str
    label: str
    seed: int
    teacher: Optional[str]
    student: Optional[str]
    finished: bool
    record: Optional[dict]
    teacher_ckpt: Optional[str] = None

    def value(self, protocol: str, metric: str) -> Optional[float]:
        """The metric in % under ``protocol`` (None when the run did not log that protocol)."""
        metrics = ((self.record or {}).get("eval") or {}).get(protocol)
        if not isinstance(metrics, dict) or metrics.get(metric) is None:
            return None
        return 100.0 * float(metrics[metric])


def find_run_dirs(paths: Iterable) -> list[Path]:
    """Run folders (holding config.yaml) at or below each path, sorted, without duplicates."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"mlkd table: {path} does not exist (give run folders or sweep folders)")
        if (path / "config.yaml").is_file():
            found[path] = None
            continue
        for config in sorted(path.rglob("config.yaml")):
            if (config.parent / METRICS_FILE).is_file() or (config.parent / "checkpoints").is_dir():
                found[config.parent] = None
    return list(found)


def load_run(run_dir: Path) -> RunResult:
    """Read one run folder (config.yaml, metrics.jsonl and experiment.json when present)."""
    from mlkd.losses.methods import row_label

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    last = RunRecord.last(run_dir)
    finished = last is not None and last.finished(final_epoch(config))
    record = _with_calibrated(run_dir, last.fields) if last is not None else None
    distill = config.get("distill", {})
    teacher_ckpt = distill.get("teacher")
    meta_path = run_dir / EXPERIMENT_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return RunResult(
            run_dir,
            meta["role"],
            meta["dataset"],
            meta["model"],
            meta["method"],
            meta["label"],
            int(meta["seed"]),
            meta.get("teacher"),
            meta.get("student"),
            finished,
            record,
            teacher_ckpt,
        )
    method = distill.get("method", "vanilla")
    data = config.get("data", {})
    dataset = data.get("name", "?")
    model = config.get("model", {}).get("name", "?")
    seed = int(config.get("train", {}).get("seed", 0))
    if method == "vanilla" and not distill.get("weights"):
        return RunResult(run_dir, "student", dataset, model, method, "Student", seed, None, None, finished, record)
    teacher_model = _teacher_model(teacher_ckpt)
    return RunResult(
        run_dir,
        "distill",
        dataset,
        model,
        method,
        row_label(method, distill.get("weights") or {}),
        seed,
        teacher_model,
        model,
        finished,
        record,
        teacher_ckpt,
    )


def _with_calibrated(run_dir: Path, record: dict) -> dict:
    """``record`` plus the ``calibrated`` metrics ``mlkd calibrate`` stored in the run's
    thresholds.json, when they were measured on the checkpoint of the record's epoch."""
    from mlkd.calibration import THRESHOLDS_FILE

    path = run_dir / THRESHOLDS_FILE
    if not path.is_file() or not isinstance(record.get("eval"), dict):
        return record
    try:
        stored = json.loads(path.read_text())
        epoch, metrics = stored["checkpoint"]["epoch"], stored["eval"]["calibrated"]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s is unreadable; its calibrated metrics are left out", path)
        return record
    if epoch != record.get("epoch"):
        log.warning(
            "%s was calibrated at epoch %s, the run's record is epoch %s; rerun mlkd calibrate",
            path,
            epoch,
            record.get("epoch"),
        )
        return record
    return {**record, "eval": {**record["eval"], "calibrated": metrics}}


def _teacher_model(ckpt: Optional[str]) -> Optional[str]:
    """The model name of the run whose checkpoint is ``ckpt`` (its config.yaml, else the file)."""
    if not ckpt:
        return None
    path = Path(ckpt)
    config = path.parent.parent / "config.yaml" if path.parent.name == "checkpoints" else None
    if config is not None and config.is_file():
        return (yaml.safe_load(config.read_text()) or {}).get("model", {}).get("name")
    if path.is_file():
        from mlkd.engine.checkpoint import load_checkpoint

        return load_checkpoint(path)["config"].get("model", {}).get("name")
    log.warning("teacher checkpoint %s not found; its model is unknown", ckpt)
    return None


def load_runs(paths: Iterable) -> list[RunResult]:
    """Every run folder under ``paths``; vanilla runs others were distilled from become teachers."""
    runs = [load_run(d) for d in find_run_dirs(paths)]
    used = {Path(r.teacher_ckpt).resolve().parent.parent for r in runs if r.teacher_ckpt}
    for run in runs:
        if run.role == "student" and run.run_dir.resolve() in used:
            run.role, run.label = "teacher", "Teacher"
    return runs


def _row_key(label: str) -> tuple:
    from mlkd.losses.methods import row_order

    order = row_order()
    return (order.index(label), "") if label in order else (len(order), label)


def build_table(
    runs: Sequence[RunResult],
    protocol: str = "thr@0.5",
    title: str = "",
    columns: Optional[list[Column]] = None,
    rows: Optional[list[str]] = None,
) -> ResultTable:
    """Aggregate finished runs into a ResultTable.

    columns / rows: the order to use (e.g. a grid's pairs and methods); by default the pairs of
    the distilled runs in folder order, then any teacher / student run that fits no pair, and
    the rows in the paper's order (Teacher, Student, RKD, ..., L2D, then others by name).
    """
    notes = []
    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        notes.append(
            f"{len(unfinished)} unfinished run(s) left out: "
            + ", ".join(str(r.run_dir) for r in unfinished[:5])
            + (" ..." if len(unfinished) > 5 else "")
        )
    done = [r for r in runs if r.finished]
    if columns is None:
        columns = []
        for run in done:
            if run.role == "distill":
                col = Column(run.dataset, run.teacher, run.student)
                if col not in columns:
                    columns.append(col)
        for run in done:
            if run.role == "teacher" and not any(c.teacher == run.model and c.dataset == run.dataset for c in columns):
                columns.append(Column(run.dataset, run.model, None))
            if run.role == "student" and not any(c.student == run.model and c.dataset == run.dataset for c in columns):
                columns.append(Column(run.dataset, None, run.model))
    if rows is None:
        rows = sorted({r.label for r in done}, key=_row_key)
    table = ResultTable(title=title, protocol=protocol, columns=list(columns), rows=list(rows), notes=notes)
    seen: dict[tuple, Path] = {}
    missing_protocol = []
    for run in done:
        if run.label not in rows:
            continue
        for index, col in enumerate(table.columns):
            if col.dataset != run.dataset:
                continue
            fits = (
                (run.role == "teacher" and col.teacher == run.model)
                or (run.role == "student" and col.student == run.model)
                or (run.role == "distill" and (col.teacher, col.student) == (run.teacher, run.student))
            )
            if not fits:
                continue
            key = (run.label, index, run.seed)
            if key in seen and seen[key] != run.run_dir:
                notes.append(
                    f"{run.run_dir} repeats {run.label} / {col.label} / seed {run.seed} of {seen[key]}; left out"
                )
                continue
            seen[key] = run.run_dir
            for metric in table.metrics:
                value = run.value(protocol, metric)
                if value is None:
                    missing_protocol.append(run.run_dir)
                    continue
                cell = table.cells.setdefault((run.label, index, metric), Cell())
                cell.values.append(value)
                cell.seeds.append(run.seed)
    if missing_protocol:
        first = sorted(set(missing_protocol))[0]
        notes.append(
            f"{len(set(missing_protocol))} run(s) did not log protocol {protocol} (e.g. {first}); "
            f"recompute with: mlkd eval RUN/checkpoints/last.pt -p {protocol}"
        )
    table.rows = [
        row
        for row in table.rows
        if any(
            (row, i, m) in table.cells or (row, i, m) in table.paper
            for i in range(len(table.columns))
            for m in table.metrics
        )
    ]
    return table


def grid_table(grid, protocol: str = "thr@0.5") -> ResultTable:
    """The table of a grid's experiments: its pairs as columns, its methods as rows, in order."""
    runs_by_dir = {}
    for run in grid.runs:
        if run.run_dir.is_dir() and (run.run_dir / "config.yaml").is_file():
            runs_by_dir[run.run_dir] = load_run(run.run_dir)
    columns = [Column(grid.dataset, p.teacher, p.student) for p in grid.pairs]
    rows = [m.label for m in grid.methods]
    results = []
    for (pair_label, row, _seed), spec in grid.cells.items():
        result = runs_by_dir.get(spec.run_dir)
        if result is None:
            continue
        # The grid decides the row label and the pair (a shared run may carry another grid's).
        results.append((pair_label, row, result))
    table = ResultTable(title=f"{grid.name}: {grid.dataset}", protocol=protocol, columns=columns, rows=rows)
    pending = sum(1 for run in grid.runs if run.run_dir not in runs_by_dir or not runs_by_dir[run.run_dir].finished)
    if pending:
        table.notes.append(f"{pending} of {len(grid.runs)} run(s) not finished yet (mlkd sweep {grid.path})")
    labels = [p.label for p in grid.pairs]
    counted = set()
    for pair_label, row, result in results:
        index = labels.index(pair_label)
        if not result.finished or (row, index, result.run_dir) in counted:
            continue  # a shared teacher serves every seed but counts once
        counted.add((row, index, result.run_dir))
        for metric in table.metrics:
            value = result.value(protocol, metric)
            if value is None:
                continue
            cell = table.cells.setdefault((row, index, metric), Cell())
            cell.values.append(value)
            cell.seeds.append(result.seed)
    return table


def paired_table(table: ResultTable, reference: str) -> ResultTable:
    """Each row minus ``reference``, seed by seed (only seeds both rows have): the mean and sample
    std of the per-seed differences, in points. Seeds share the data order and, for students
    built alike, the initialisation, so paired differences are far less noisy than the rows'
    own spread."""
    if reference not in table.rows:
        raise ConfigError(f"--paired {reference!r}: no such row; rows: {', '.join(table.rows)}")
    rows = [row for row in table.rows if row != reference]
    out = ResultTable(
        title=f"{table.title} — minus {reference}, paired by seed",
        protocol=table.protocol,
        columns=list(table.columns),
        rows=rows,
        metrics=table.metrics,
        paired_with=reference,
    )
    for (row, column, metric), cell in table.cells.items():
        ref = table.cells.get((reference, column, metric))
        if row == reference or ref is None:
            continue
        ref_by_seed = dict(zip(ref.seeds, ref.values))
        pairs = [
            (seed, value - ref_by_seed[seed]) for seed, value in zip(cell.seeds, cell.values) if seed in ref_by_seed
        ]
        if pairs:
            out.cells[(row, column, metric)] = Cell([d for _, d in pairs], [s for s, _ in pairs])
    return out
