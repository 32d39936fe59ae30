"""The paper's published tables (``paper_tables.yaml``) as data, and beside our own tables.

Table ids follow the paper's numbering: table1/2 (COCO), table3 (VOC per-class AP), table4
(ablation), table5 (NUS-WIDE), table6 (reversed KD), table7/8 (VOC). See the YAML's header for
the poster's own numbering and the transcription notes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from mlkd.analysis.results import Cell, Column, ResultTable
from mlkd.errors import ConfigError

PAPER_FILE = Path(__file__).with_name("paper_tables.yaml")


@lru_cache(maxsize=1)
def _load() -> dict:
    if not PAPER_FILE.is_file():
        raise ConfigError(f"the paper's tables are missing ({PAPER_FILE}); reinstall mlkd")
    return yaml.safe_load(PAPER_FILE.read_text())


def paper_table_ids() -> list[str]:
    return [key for key in _load() if key.startswith("table")]


def paper_data(table_id: str) -> dict:
    """The raw entry of ``table_id`` (a copy is not made: do not modify it)."""
    tables = _load()
    if table_id not in tables or not table_id.startswith("table"):
        raise ConfigError(f"unknown paper table {table_id!r}; known: {', '.join(paper_table_ids())}")
    return tables[table_id]


def _canonical(model: Optional[str]) -> Optional[str]:
    """The timm architecture of a model name: aliases resolved, a weights tag dropped
    (``resnet34.tv_in1k`` is ResNet-34, as the official recipe names it)."""
    from mlkd.models.names import resolve_model_name

    return resolve_model_name(model.split(".")[0]) if model else model


def paper_f1_protocol(table_id: str) -> Optional[str]:
    """The protocol of the published OF1 / CF1 of ``table_id`` (None for a table without F1)."""
    return paper_data(table_id).get("f1_protocol")


def paper_table(table_id: str) -> ResultTable:
    """A published table as a ResultTable (one value per cell, n = 1).

    Per-class tables (table3) have the classes as metrics, then the printed mAP and the mean of
    the row's per-class APs (which differ: a known erratum).
    """
    data = paper_data(table_id)
    title = f"paper {table_id}: {data['title']} ({data['source']})"
    if data.get("kind") == "per_class":
        metrics = tuple(data["classes"]) + ("mAP (printed)", "mean of APs")
        table = ResultTable(
            title=title,
            protocol="AP",
            rows=list(data["rows"]),
            metrics=metrics,
            columns=[Column(data["dataset"], data["teacher"], data["student"])],
            published=True,
        )
        for row, entry in data["rows"].items():
            values = list(entry["ap"]) + [entry["printed_mAP"], float(np.mean(entry["ap"]))]
            for metric, value in zip(metrics, values):
                table.cells[(row, 0, metric)] = Cell([float(value)], [0])
        table.notes.append("erratum: the printed mAP is not the mean of the row's per-class APs")
        return table
    columns = [Column(data["dataset"], p["teacher"], p["student"]) for p in data["pairs"]]
    rows: list[str] = []
    for pair in data["pairs"]:
        rows += [row for row in pair["rows"] if row not in rows]
    table = ResultTable(
        title=title,
        protocol=f"mAP; OF1/CF1 under {data.get('f1_protocol', 'oracle-k-strict')}",
        columns=columns,
        rows=rows,
        metrics=tuple(data["metrics"]),
        published=True,
    )
    for index, pair in enumerate(data["pairs"]):
        for row, values in pair["rows"].items():
            for metric, value in zip(data["metrics"], values):
                if value is not None:
                    table.cells[(row, index, metric)] = Cell([float(value)], [0])
    return table


def attach_paper(table: ResultTable, table_id: str) -> Optional[ResultTable]:
    """Put the published values of ``table_id`` beside ``table``'s matching columns.

    A column matches a published pair with the same teacher and student (paper aliases and
    timm names are the same model). Published rows our table lacks are added (empty on our
    side). Returns the published table itself when no column matched (print it on its own),
    else None.
    """
    data = paper_data(table_id)
    published = paper_table(table_id)
    table.paper_id = table_id
    if data.get("kind") == "per_class":
        return published
    matched = False
    for index, col in enumerate(table.columns):
        for p_index, p_col in enumerate(published.columns):
            if (_canonical(col.teacher), _canonical(col.student)) != (
                _canonical(p_col.teacher),
                _canonical(p_col.student),
            ):
                continue
            matched = True
            for row in published.rows:
                for metric in table.metrics:
                    cell = published.cells.get((row, p_index, metric))
                    table.paper[(row, index, metric)] = cell.mean if cell else None
                if row not in table.rows:
                    table.rows.append(row)
    if not matched:
        return published
    f1 = data.get("f1_protocol", "oracle-k-strict")
    if table.protocol != f1:
        table.notes.append(
            f"the paper's OF1/CF1 are under {f1} (ours: {table.protocol}); "
            f"pass --protocol {f1} to compare F1 like for like (mAP does not depend on it)"
        )
    return None
