"""Paper-style result tables (rows = methods, columns = mAP / OF1 / CF1) from run records."""

from __future__ import annotations

import math

from mlkd import optional
from mlkd.metrics import HEADLINE_METRICS as METRIC_COLUMNS


def metrics_row(record: dict, protocol: str) -> dict[str, float]:
    """{metric: value in %} of a metrics.jsonl record under ``protocol`` (NaN when absent)."""
    metrics = record.get("eval", {}).get(protocol, {})
    return {name: 100.0 * metrics[name] if name in metrics else math.nan for name in METRIC_COLUMNS}


def markdown_table(rows: dict[str, dict[str, float]], protocol: str, bold_best: bool = True) -> str:
    """Markdown table of ``{row name: {metric: %}}``; the best value of each column in bold.

    The first row (the teacher, by convention) is left out of the "best" comparison.
    """
    names = list(rows)
    best = {}
    for column in METRIC_COLUMNS:
        values = [rows[name][column] for name in names[1:] if not math.isnan(rows[name][column])]
        best[column] = max(values) if values else math.nan
    lines = [f"| method ({protocol}) | " + " | ".join(METRIC_COLUMNS) + " |", "|---|" + "---:|" * len(METRIC_COLUMNS)]
    for name in names:
        cells = []
        for column in METRIC_COLUMNS:
            value = rows[name][column]
            text = "n/a" if math.isnan(value) else f"{value:.2f}"
            if bold_best and name != names[0] and value == best[column]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(rows: dict[str, dict[str, float]], path, title: str, metric: str = "mAP") -> None:
    """A PNG bar chart of one metric per row."""
    plt = optional.pyplot("the chart")

    names = list(rows)
    values = [rows[name][metric] for name in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.5))
    bars = ax.bar(names, values, color=["#555555"] + ["#4c72b0"] * (len(names) - 1))
    finite = [v for v in values if not math.isnan(v)]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 5), min(100.0, max(finite) + 2))
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
