"""Reproducing the paper: experiment grids (``grid``), the sweep runner (``sweep``), the
published numbers (``paper``, ``paper_tables.yaml``) and result tables (``report``)."""

from mlkd.reproduce.grid import Grid, Pair, RunSpec, load_grid
from mlkd.reproduce.report import table_text, tables_for
from mlkd.reproduce.sweep import SweepReport, format_plan, run_status, run_sweep

__all__ = [
    "Grid",
    "Pair",
    "RunSpec",
    "SweepReport",
    "format_plan",
    "load_grid",
    "run_status",
    "run_sweep",
    "table_text",
    "tables_for",
]
