"""``mlkd table``: result tables from grids or run folders, with the paper's numbers beside."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from mlkd.analysis.render import render
from mlkd.analysis.results import ResultTable, build_table, grid_table, load_runs, paired_table
from mlkd.errors import ConfigError


def is_grid_file(path: str) -> bool:
    return Path(path).suffix in (".yaml", ".yml") and Path(path).is_file()


def default_protocol(paper: Optional[str] = None) -> str:
    """``thr@0.5``; beside a published table, the protocol of its F1 (``oracle-k-strict``, the
    official code's rule), so that F1 is compared like for like."""
    from mlkd.reproduce.paper import paper_f1_protocol

    return (paper_f1_protocol(paper) if paper else None) or "thr@0.5"


def tables_for(
    paths: Sequence[str],
    protocol: Optional[str] = None,
    paper: Optional[str] = None,
    overrides: Sequence[str] = (),
    out: Optional[str] = None,
    title: Optional[str] = None,
    paired: Optional[str] = None,
) -> list[ResultTable]:
    """One table per grid file in ``paths`` and one for all the run / sweep folders together;
    with ``paper``, the published values beside matching pairs (or the published table after);
    with ``paired``, each table is followed by its rows minus that row, paired by seed.
    ``protocol`` None: :func:`default_protocol`. Every table names its protocol (its caption)."""
    from mlkd.reproduce.grid import load_grid
    from mlkd.reproduce.paper import attach_paper, paper_table

    protocol = protocol or default_protocol(paper)
    grids = [p for p in paths if is_grid_file(p)]
    folders = [p for p in paths if not is_grid_file(p)]
    tables = [grid_table(load_grid(g, list(overrides), out), protocol) for g in grids]
    if folders:
        runs = load_runs(folders)
        if not runs:
            raise ConfigError(f"mlkd table: no run folder (config.yaml + metrics.jsonl) under {', '.join(folders)}")
        tables.append(build_table(runs, protocol, title or "results: " + ", ".join(folders)))
    if title:
        for table in tables:
            table.title = title
    if paired:
        tables = [t for table in tables for t in (table, paired_table(table, paired))]
    if not paper:
        if not tables:
            raise ConfigError("mlkd table: give run folders, sweep folders or grid files (or --paper TABLE)")
        return tables
    if not tables:
        return [paper_table(paper)]
    extra = []
    for table in tables:
        standalone = attach_paper(table, paper)
        if standalone is not None and not extra:
            extra.append(standalone)
    return tables + extra


def table_text(
    paths: Sequence[str],
    protocol: Optional[str] = None,
    fmt: str = "md",
    paper: Optional[str] = None,
    overrides: Sequence[str] = (),
    out: Optional[str] = None,
    title: Optional[str] = None,
    paired: Optional[str] = None,
) -> str:
    """The rendered tables (``md``, ``csv`` or ``latex``), separated by blank lines."""
    tables = tables_for(paths, protocol, paper, overrides, out, title, paired)
    return "\n\n".join(render(table, fmt).rstrip("\n") for table in tables) + "\n"
