"""The term diagnostics of a grid's runs as a table (``mlkd table GRID --diagnostics``).

Per row of the grid (seeds averaged; a row's runs need not be finished): for the first and the
last recorded epoch, each distillation term's gradient ratio to BCE (the median over the
epoch's measurements, ``mlkd.engine.diagnostics``) and the label-embedding geometry of the
student (mean distance within class groups ``cd`` and within image groups ``id``, over the mean
embedding norm), with the teacher's beside it.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from mlkd.runrecord import epoch_records


def _figures(record: dict) -> dict[str, float]:
    """{column: value} of one epoch record's diagnostics."""
    diag = record.get("diagnostics") or {}
    out = {f"{name} ratio": entry.get("ratio") for name, entry in (diag.get("terms") or {}).items() if name != "bce"}
    out.update({name: value for name, value in (diag.get("geometry") or {}).items()})
    return {k: float(v) for k, v in out.items() if v is not None}


def run_diagnostics(run_dir) -> Optional[tuple[int, dict, int, dict]]:
    """(first epoch, its figures, last epoch, its figures) of a run's records with diagnostics."""
    records = [r for r in epoch_records(run_dir) if r.get("diagnostics")]
    if not records:
        return None
    return records[0]["epoch"], _figures(records[0]), records[-1]["epoch"], _figures(records[-1])


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _cell(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def diagnostics_table(grid) -> str:
    """Markdown: per grid row, the seeds' mean diagnostics at the first and last epoch."""
    rows: dict[str, list] = {}
    for (_, label, _), spec in grid.cells.items():
        found = run_diagnostics(spec.run_dir)
        if found is not None and found not in rows.setdefault(label, []):
            rows[label].append(found)
    # the distillation terms in the order the runs' objectives list them
    terms = list(
        dict.fromkeys(
            key[: -len(" ratio")]
            for runs in rows.values()
            for r in runs
            for fig in (r[1], r[3])
            for key in fig
            if key.endswith(" ratio")
        )
    )
    geometry = ("student_cd", "student_id", "teacher_cd", "teacher_id")
    header = (
        ["row", "seeds", "epochs"] + [f"{t} / BCE (first → last)" for t in terms] + [f"{g} (last)" for g in geometry]
    )
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---|" + "---:|" * (len(header) - 3)]
    for label, runs in rows.items():
        firsts = sorted({r[0] for r in runs})
        lasts = sorted({r[2] for r in runs})
        cells = [label, str(len(runs)), f"{'/'.join(map(str, firsts))} → {'/'.join(map(str, lasts))}"]
        for term in terms:
            key = f"{term} ratio"
            first = _mean([r[1][key] for r in runs if key in r[1]])
            last = _mean([r[3][key] for r in runs if key in r[3]])
            cells.append(f"{_cell(first)} → {_cell(last)}")
        cells += [_cell(_mean([r[3][g] for r in runs if g in r[3]])) for g in geometry]
        lines.append("| " + " | ".join(cells) + " |")
    caption = (
        f"Term diagnostics of {grid.name} ({grid.dataset}): gradient norm of each weighted term on the "
        "student outputs it reads over BCE's on the logits (median of the epoch's measurements), "
        "and the label-embedding spread within class (cd) and image (id) groups over the mean norm; "
        "means over seeds"
    )
    return caption + "\n\n" + "\n".join(lines) + "\n"
