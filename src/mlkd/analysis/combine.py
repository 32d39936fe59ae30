"""``mlkd analyze combine``: the numbers of several analysis folders (one per seed) as mean ± std.

Each folder is the ``--out`` of ``mlkd analyze`` for one replicate (same model names). The
numbers read: mAP (per-class), the correlation MAD vs the teacher, retrieval mAP@k / P@k per
representation, and the attention scores. A model or number missing from a folder is left out
of that cell's n.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mlkd.errors import ConfigError

FILES = ("per_class.json", "correlation.json", "retrieval.json", "attention.json")


def folder_numbers(folder: Path) -> dict[str, dict[str, float]]:
    """{model: {number name: value}} from one analysis folder's JSON files."""
    numbers: dict[str, dict[str, float]] = {}

    def put(model: str, name: str, value) -> None:
        if isinstance(value, (int, float)) and np.isfinite(value):
            numbers.setdefault(model, {})[name] = float(value)

    found = [name for name in FILES if (folder / name).is_file()]
    if not found:
        raise ConfigError(
            f"analyze combine: {folder} holds none of {', '.join(FILES)} (give folders written by mlkd analyze --out)"
        )
    read = {name: json.loads((folder / name).read_text()) for name in found}
    for model, value in read.get("per_class.json", {}).get("mAP", {}).items():
        put(model, "mAP", value)
    for model, value in read.get("correlation.json", {}).get("mad", {}).items():
        put(model, "correlation MAD", value)
    for model, reps in read.get("retrieval.json", {}).get("metrics", {}).items():
        for rep, metrics in reps.items():
            for metric, value in metrics.items():
                put(model, f"{metric} {rep}", value)
    for model, scores in read.get("attention.json", {}).get("scores", {}).items():
        for key, value in scores.items():
            put(model, key, value)
    return numbers


def combine(folders: Sequence[str | Path]) -> dict:
    """{"folders": [...], "models": {model: {number: {"mean", "std", "n", "values"}}}}."""
    if not folders:
        raise ConfigError("analyze combine: give the analysis folders to combine (one per seed)")
    per_folder = [folder_numbers(Path(folder)) for folder in folders]
    models: dict[str, dict[str, dict]] = {}
    for numbers in per_folder:
        for model, values in numbers.items():
            for name, value in values.items():
                models.setdefault(model, {}).setdefault(name, []).append(value)
    result = {
        model: {
            name: {
                "mean": float(np.mean(v)),
                "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                "n": len(v),
                "values": v,
            }
            for name, v in values.items()
        }
        for model, values in models.items()
    }
    return {"folders": [str(f) for f in folders], "models": result}


def to_markdown(combined: dict) -> str:
    """Rows = models, columns = numbers, cells ``mean ± std`` (``(n=k)`` when n differs)."""
    models = combined["models"]
    columns = sorted(
        dict.fromkeys(name for values in models.values() for name in values),
        key=lambda name: 0 if name == "mAP" else 1 if name == "correlation MAD" else 2 if "@" in name else 3,
    )
    n_all = len(combined["folders"])
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for model, values in models.items():
        cells = []
        for name in columns:
            cell = values.get(name)
            if cell is None:
                cells.append("–")
                continue
            digits = 2 if abs(cell["mean"]) >= 2 else 3
            text = f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"
            cells.append(text + (f" (n={cell['n']})" if cell["n"] != n_all else ""))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
