"""Render a ResultTable as Markdown, CSV or LaTeX.

Cells read ``mean ± std`` (sample std over seeds) with 2 decimals; ``(n=k)`` is added where a
cell has another number of seeds than the table's usual n, which the caption states. The best
mean of each column (rounded to the shown 2 decimals; ties all bold) is bold, the Teacher row
left out. With published numbers attached, each metric column is followed by the paper's value.
CSV is tidy: one line per (pair, row, metric) with mean, std, n, the per-seed values and the
published value.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Optional

from mlkd.analysis.results import Cell, ResultTable
from mlkd.errors import ConfigError

FORMATS = ("md", "csv", "latex")


def _num(value: Optional[float]) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def _cell_text(cell: Cell, typical_n: int, pm: str, signed: bool = False) -> str:
    """``mean ± std``; paired cells (``signed``) add ``[k/n]``: the seeds whose difference is > 0."""
    if not cell.n:
        return "–"
    text = f"{cell.mean:+.2f}" if signed else f"{cell.mean:.2f}"
    if cell.n > 1:
        text += f" {pm} {cell.std:.2f}"
    if signed:
        text += f" [{sum(value > 0 for value in cell.values)}/{cell.n}]"
    elif cell.n != typical_n:
        text += f" (n={cell.n})"
    return text


def _is_best(table: ResultTable, row: str, column: int, metric: str, paper: bool) -> bool:
    if row == "Teacher":
        return False
    value = table.paper.get((row, column, metric)) if paper else table.cell(row, column, metric).mean
    if value is None or math.isnan(value):
        return False
    return round(value, 2) == table.best(column, metric, paper)


def _column_name(table: ResultTable, index: int) -> str:
    """The pair's label, with its dataset when the table spans several datasets."""
    col = table.columns[index]
    several = len({c.dataset for c in table.columns}) > 1
    return f"{col.dataset} {col.label}" if several else col.label


def _headers(table: ResultTable) -> list[tuple[int, str, bool]]:
    """(column index, metric, is_paper) for every value column, in order."""
    out = []
    for index in range(len(table.columns)):
        has_paper = any(key[1] == index for key in table.paper)
        for metric in table.metrics:
            out.append((index, metric, False))
            if has_paper:
                out.append((index, metric, True))
    return out


def caption(table: ResultTable) -> str:
    n = table.typical_n
    if table.published:
        what = "published numbers"
    elif table.paired_with:
        what = (
            f"mean ± sample std of the per-seed differences (points), n = {n} seeds; [k/n]: the "
            f"seeds where the row beats {table.paired_with}"
        )
    elif n > 1:
        what = f"mean ± sample std over n = {n} seeds"
    else:
        what = f"one seed per cell (n = {n})" if n else "no finished run"
    text = f"{table.title} — protocol {table.protocol}; {what}"
    if table.cells:
        text += "; best value per column in bold (Teacher row excluded)"
    if table.paper:
        text += f"; 'paper' = published in {table.paper_id}"
    datasets = sorted({c.dataset for c in table.columns})
    if datasets and not table.published:
        text += f"; dataset {', '.join(datasets)}"
    return text


def to_markdown(table: ResultTable) -> str:
    headers = _headers(table)
    multi = len(table.columns) > 1
    names = []
    for index, metric, paper in headers:
        name = f"{_column_name(table, index)} {metric}" if multi else metric
        names.append(f"{name} (paper)" if paper else name)
    lines = [f"*{caption(table)}*", "", "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    n = table.typical_n
    for row in table.rows:
        cells = []
        for index, metric, paper in headers:
            text = (
                _num(table.paper.get((row, index, metric)))
                if paper
                else _cell_text(table.cell(row, index, metric), n, "±", bool(table.paired_with))
            )
            if text != "–" and _is_best(table, row, index, metric, paper):
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [f"\n{note}" for note in table.notes]
    return "\n".join(lines)


def to_csv(table: ResultTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "dataset",
            "teacher",
            "student",
            "method",
            "metric",
            "protocol",
            "mean",
            "std",
            "n",
            "values",
            "seeds",
            "paper",
            "best",
        ]
    )
    for index, col in enumerate(table.columns):
        for row in table.rows:
            for metric in table.metrics:
                cell = table.cell(row, index, metric)
                paper = table.paper.get((row, index, metric))
                if not cell.n and paper is None:
                    continue
                writer.writerow(
                    [
                        col.dataset,
                        col.teacher or "",
                        col.student or "",
                        row,
                        metric,
                        table.protocol,
                        f"{cell.mean:.4f}" if cell.n else "",
                        f"{cell.std:.4f}" if cell.n > 1 else "",
                        cell.n,
                        ";".join(f"{v:.4f}" for v in cell.values),
                        ";".join(str(s) for s in cell.seeds),
                        "" if paper is None else f"{paper:.2f}",
                        int(bool(cell.n) and _is_best(table, row, index, metric, False)),
                    ]
                )
    return buffer.getvalue()


# Greek letters that row labels use (λ, Δ): as math, so the table compiles under pdflatex too.
_GREEK = {
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "γ": r"$\gamma$",
    "δ": r"$\delta$",
    "Δ": r"$\Delta$",
    "λ": r"$\lambda$",
    "μ": r"$\mu$",
    "σ": r"$\sigma$",
    "τ": r"$\tau$",
}


def _tex(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("->", r"$\rightarrow$"),
        ("±", r"$\pm$"),
        ("–", "--"),
        ("—", "---"),
        *_GREEK.items(),
    ):
        text = text.replace(char, escaped)
    return text


def to_latex(table: ResultTable) -> str:
    headers = _headers(table)
    n = table.typical_n
    spans = []
    for index in range(len(table.columns)):
        width = sum(1 for h in headers if h[0] == index)
        spans.append((width, _tex(_column_name(table, index))))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{" + _tex(caption(table)) + "}",
        r"\begin{tabular}{l" + "r" * len(headers) + "}",
        r"\toprule",
    ]
    lines.append(
        " & ".join(["Teacher $\\rightarrow$ Student"] + [rf"\multicolumn{{{w}}}{{c}}{{{label}}}" for w, label in spans])
        + r" \\"
    )
    start = 2
    rules = []
    for width, _ in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    lines.append(" ".join(rules))
    lines.append(" & ".join(["Method"] + [_tex(f"{m} (paper)" if p else m) for _, m, p in headers]) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        cells = []
        for index, metric, paper in headers:
            text = (
                _num(table.paper.get((row, index, metric)))
                if paper
                else _cell_text(table.cell(row, index, metric), n, "±", bool(table.paired_with))
            )
            text = _tex(text)
            if text != "--" and _is_best(table, row, index, metric, paper):
                text = rf"\textbf{{{text}}}"
            cells.append(text)
        lines.append(" & ".join([_tex(row)] + cells) + r" \\")
        if row == "Teacher":
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    lines += [f"% {note}" for note in table.notes]
    return "\n".join(lines)


def render(table: ResultTable, fmt: str = "md") -> str:
    """The table as ``md``, ``csv`` or ``latex`` text."""
    if fmt == "md":
        return to_markdown(table)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "latex":
        return to_latex(table)
    raise ConfigError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
