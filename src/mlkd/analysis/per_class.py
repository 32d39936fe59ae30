"""Per-class AP (the paper's Table 3) and the per-label KD gain over the vanilla student.

Rows are the models, columns the classes sorted by the baseline's (vanilla student's) AP in
ascending order (its hardest classes first: the paper reports the largest gains there), then
mAP. AP is ``mlkd.metrics.average_precision`` (sklearn's non-interpolated AP) on the
probabilities ``mlkd eval`` scores, so each row's mAP equals the run's logged mAP on the full
test split; mAP is the plain mean of the row's finite APs (the paper's printed Table 3 mAP
row is not, a known erratum). Classes without a positive test image have NaN AP, sort last and
are left out of mAP. The gain of a model on a class is its AP minus the baseline's, in points.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional

import numpy as np

from mlkd.analysis.common import Analysis, pyplot, write_json
from mlkd.errors import ConfigError
from mlkd.metrics import average_precision


def per_class_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class AP [q] in [0,1] (NaN without positives) of ``scores [N,q]`` vs ``targets [N,q]``."""
    return average_precision(scores, targets)


def class_order(baseline_ap: np.ndarray) -> np.ndarray:
    """Class indices sorted by ``baseline_ap [q]`` ascending (stable; NaN last)."""
    key = np.where(np.isnan(baseline_ap), np.inf, baseline_ap)
    return np.argsort(key, kind="stable")


def mean_ap(ap: np.ndarray) -> float:
    finite = ap[~np.isnan(ap)]
    return float(finite.mean()) if finite.size else math.nan


def table_rows(aps: dict[str, np.ndarray], classes: list[str], order: np.ndarray) -> tuple[list[str], list[list]]:
    """Header and rows (name, AP% per class in ``order``..., mAP%) of the per-class table."""
    header = ["method", *[classes[c] for c in order], "mAP"]
    rows = [[name, *[100.0 * ap[c] for c in order], 100.0 * mean_ap(ap)] for name, ap in aps.items()]
    return header, rows


def markdown(header: list[str], rows: list[list], bold_best_from: int = 0) -> str:
    """Markdown table; the best value of each column among rows[bold_best_from:] in bold."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    best = []
    for j in range(1, len(header)):
        values = [r[j] for r in rows[bold_best_from:] if not math.isnan(r[j])]
        best.append(max(values) if values else math.nan)
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row[1:]):
            text = "n/a" if math.isnan(value) else f"{value:.2f}"
            cells.append(f"**{text}**" if i >= bold_best_from and value == best[j] else text)
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gain_chart(
    gains: dict[str, np.ndarray],
    classes: list[str],
    order: np.ndarray,
    baseline: str,
    path: Path,
    teacher: Optional[str] = None,
) -> None:
    """Grouped bars of AP gain (points) per class in ``order``, one bar per model; the teacher,
    when in ``gains``, is drawn as black markers instead of bars."""
    plt = pyplot()
    students = [n for n in gains if n != teacher]
    q = len(order)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * q * max(1, len(students)) ** 0.5 + 2), 3.8))
    width = 0.8 / max(1, len(students))
    x = np.arange(q)
    for i, name in enumerate(students):
        ax.bar(x - 0.4 + width * (i + 0.5), gains[name][order], width, label=name)
    if teacher in gains:
        ax.plot(
            x,
            gains[teacher][order],
            "k_",
            markersize=12,
            mew=2,
            label=teacher if "teacher" in teacher.lower() else f"{teacher} (teacher)",
        )
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [classes[c] for c in order], rotation=60 if q > 8 else 0, ha="right" if q > 8 else "center", fontsize=8
    )
    ax.set_ylabel(f"AP − AP({baseline}) (points)")
    ax.set_title(f"Per-class KD gain over {baseline} (classes by {baseline}'s AP, ascending)")
    ax.legend(fontsize=8, ncol=min(4, len(gains)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(analysis: Analysis, out: Path) -> dict:
    """Write per_class.md / .csv / .json and per_class_gain.png; return the summary numbers."""
    if analysis.baseline is None:
        raise ConfigError(
            "per-class: needs a baseline (vanilla student) besides the teacher; give two or more checkpoints"
        )
    out.mkdir(parents=True, exist_ok=True)
    classes = analysis.classes
    aps = {
        name: per_class_ap(analysis.outputs(name)["scores"], analysis.outputs(name)["targets"])
        for name in analysis.names
    }
    order = class_order(aps[analysis.baseline])
    # Teacher first, baseline second, then the others in the order given.
    names = [analysis.teacher, analysis.baseline] + [
        n for n in analysis.names if n not in (analysis.teacher, analysis.baseline)
    ]
    aps = {name: aps[name] for name in names}
    header, rows = table_rows(aps, classes, order)
    (out / "per_class.md").write_text(markdown(header, rows, bold_best_from=1) + "\n")
    with open(out / "per_class.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[r[0], *[f"{v:.4f}" for v in r[1:]]] for r in rows])
    base = aps[analysis.baseline]
    gains = {name: 100.0 * (aps[name] - base) for name in names if name != analysis.baseline}
    gain_chart(gains, classes, order, analysis.baseline, out / "per_class_gain.png", analysis.teacher)
    summary = {
        "analysis": "per-class",
        "teacher": analysis.teacher,
        "baseline": analysis.baseline,
        "num_images": int(len(analysis.targets())),
        "class_order": [classes[c] for c in order],
        "mAP": {name: 100.0 * mean_ap(ap) for name, ap in aps.items()},
        "AP": {name: {classes[c]: 100.0 * float(ap[c]) for c in order} for name, ap in aps.items()},
        "mean_gain": {name: float(np.nanmean(g)) if np.isfinite(g).any() else math.nan for name, g in gains.items()},
        "classes_improved": {name: int((g > 0).sum()) for name, g in gains.items()},
        "files": [str(out / f) for f in ("per_class.md", "per_class.csv", "per_class_gain.png")],
    }
    write_json(summary, out / "per_class.json")
    return summary
