"""Dataset summaries for ``mlkd data summary``: counts per split and per class, as a dict and
as markdown."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def _labels(dataset) -> np.ndarray:
    if hasattr(dataset, "labels_matrix"):
        return np.asarray(dataset.labels_matrix())
    # Generic fallback: read every target (loads every image; fine for small datasets).
    rows = [np.asarray(item[1]) for item in (dataset[i] for i in range(len(dataset))) if item]
    return np.stack(rows) if rows else np.zeros((0, len(dataset.classes)), dtype=np.uint8)


def summarize_dataset(dataset) -> dict[str, Any]:
    """Counts of one dataset split (one with ``classes`` and, ideally, ``labels_matrix()``).

    Returns {"images", "classes" (q), "labels_per_image" (mean), "max_labels",
    "images_without_labels", "class_counts" {name: positives}, "classes_without_images",
    "missing" (listed files absent on disk, dropped), "missing_examples" (up to 5 paths),
    "skipped" (unreadable images met so far in this process)}.
    """
    labels = _labels(dataset)
    classes = list(dataset.classes)
    per_image = labels.sum(axis=1) if len(labels) else np.zeros(0)
    counts = labels.sum(axis=0) if len(labels) else np.zeros(len(classes))
    return {
        "images": int(len(labels)),
        "classes": len(classes),
        "labels_per_image": round(float(per_image.mean()), 4) if len(labels) else 0.0,
        "max_labels": int(per_image.max()) if len(labels) else 0,
        "images_without_labels": int((per_image == 0).sum()),
        "class_counts": {c: int(n) for c, n in zip(classes, counts)},
        "classes_without_images": [c for c, n in zip(classes, counts) if n == 0],
        "missing": int(getattr(dataset, "missing", 0)),
        "missing_examples": list(getattr(dataset, "missing_files", []))[:5],
        "skipped": int(getattr(dataset, "skipped", 0)),
    }


def format_summary(summary_by_split: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one table of totals (a row per split), one of per-class counts (a column per
    split), and the missing files' examples if any."""
    splits = list(summary_by_split)
    rows = ["| split | images | classes | labels / image | max labels | no label "
            "| missing files | skipped |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for split in splits:
        s = summary_by_split[split]
        rows.append(f"| {split} | {s['images']} | {s['classes']} | {s['labels_per_image']:.3f} "
                    f"| {s['max_labels']} | {s['images_without_labels']} | {s['missing']} "
                    f"| {s['skipped']} |")
    classes: list[str] = []
    for split in splits:
        classes += [c for c in summary_by_split[split]["class_counts"] if c not in classes]
    table = ["| class | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for name in classes:
        cells = [str(summary_by_split[s]["class_counts"].get(name, "-")) for s in splits]
        table.append(f"| {name} | " + " | ".join(cells) + " |")
    parts = ["## Splits", "", *rows, "", "## Images per class", "", *table]
    for split in splits:
        examples = summary_by_split[split].get("missing_examples") or []
        if examples:
            parts += ["", f"Missing files in {split} (first {len(examples)}): "
                      + ", ".join(f"`{p}`" for p in examples)]
    return "\n".join(parts) + "\n"
