"""Dataset summaries for ``mlkd data summary``: counts per split and per class, labels per image,
what a training batch of B holds, and the files missing or unreadable; as a dict and as markdown.

``summarize_config(cfg, labels_only=True)`` reads only the annotations (the image files are not
looked at: ``on_missing: unchecked``), so a dataset's label structure can be inspected before
its images are downloaded.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np

from mlkd.data.batch_stats import batch_label_statistics, shuffled_batches
from mlkd.data.protocol import MultiLabelDataset

BATCHES = 500  # shuffled batches the per-batch statistics average over


def batch_summary(labels: np.ndarray, classes: list[str], batch_size: int, seed: int = 0) -> dict:
    """What shuffled training batches of ``batch_size`` hold (``labels`` [N, q] 0/1): the
    statistics of :func:`batch_label_statistics` plus, per class, the mean positives per batch
    and the share of batches where it has >= 3 (a CD group that carries loss)."""
    if not 1 <= batch_size <= len(labels):
        return {"batch_size": batch_size, "note": f"needs at least {batch_size} images"}
    stats = batch_label_statistics(labels, batch_size, BATCHES, seed)
    per_class = (np.asarray(labels) > 0.5)[shuffled_batches(len(labels), batch_size, BATCHES, seed)].sum(axis=1)
    stats["per_class"] = {
        c: {
            "positives": round(float(per_class[:, k].mean()), 3),
            "batches_with_3plus": round(float((per_class[:, k] >= 3).mean()), 3),
        }
        for k, c in enumerate(classes)
    }
    return stats


def summarize_dataset(dataset: MultiLabelDataset, batch_size: int | None = None) -> dict[str, Any]:
    """Counts of one dataset split.

    Returns {"images", "classes" (q), "labels_per_image" (mean), "max_labels",
    "labels_per_image_counts" {k: images with k labels}, "images_without_labels",
    "class_counts" {name: positives}, "classes_without_images", "files_checked" (False in the
    labels-only mode), "missing" (listed files absent on disk, dropped), "missing_examples" (up
    to 5 paths), "skipped" (unreadable images dropped by data.verify_images plus those met when
    loading in this process), "skipped_examples" (up to 5 paths)}; with ``batch_size`` also
    "batches" (:func:`batch_summary`).
    """
    labels = np.asarray(dataset.labels_matrix())
    classes = list(dataset.classes)
    per_image = labels.sum(axis=1).astype(int) if len(labels) else np.zeros(0, dtype=int)
    counts = labels.sum(axis=0) if len(labels) else np.zeros(len(classes))
    unreadable = list(dataset.unreadable_files)
    summary = {
        "images": int(len(labels)),
        "classes": len(classes),
        "labels_per_image": round(float(per_image.mean()), 4) if len(labels) else 0.0,
        "max_labels": int(per_image.max()) if len(labels) else 0,
        "labels_per_image_counts": {int(k): int(n) for k, n in enumerate(np.bincount(per_image)) if n},
        "images_without_labels": int((per_image == 0).sum()),
        "class_counts": {c: int(n) for c, n in zip(classes, counts)},
        "classes_without_images": [c for c, n in zip(classes, counts) if n == 0],
        "files_checked": bool(dataset.files_checked),
        "missing": int(dataset.missing),
        "missing_examples": list(dataset.missing_files)[:5],
        "skipped": len(unreadable) + int(dataset.skipped),
        "skipped_examples": unreadable[:5],
    }
    if batch_size:
        summary["batches"] = batch_summary(labels, classes, batch_size)
    return summary


def _accepts(builder, option: str) -> bool:
    return option in inspect.signature(builder).parameters


def summarize_config(cfg, labels_only: bool = False, batch_size: int | None = None) -> dict:
    """{split: summary} of the datasets ``cfg.data`` builds ("train", and "test" or
    "holdout (validation)"). ``labels_only``: the image files are neither looked for nor decoded
    (``on_missing: unchecked``, ``verify_images`` off); generated datasets are built as usual.
    ``batch_size`` (default ``data.batch_size``): the B of the train split's batch statistics."""
    from mlkd.data.loaders import build_datasets
    from mlkd.errors import ConfigError
    from mlkd.registries import DATASETS

    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: the batch size must be 1 or more")
    data = cfg.data
    if labels_only:
        options = dict(data.options)
        if _accepts(DATASETS.get(data.name), "on_missing"):
            options["on_missing"] = "unchecked"
        data = data.model_copy(update={"options": options, "verify_images": False})
    train, test = build_datasets(data)
    held_out = "holdout (validation)" if data.holdout else "test"
    return {"train": summarize_dataset(train, batch_size or data.batch_size), held_out: summarize_dataset(test)}


def _files_cell(s: Mapping[str, Any], key: str) -> str:
    return str(s[key]) if s.get("files_checked", True) else "not checked"


def format_summary(summary_by_split: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: a table of totals (a row per split), labels per image, per-class counts (a
    column per split, plus the train split's per-batch figures), the batch statistics, and the
    missing / unreadable files' examples if any."""
    splits = list(summary_by_split)
    rows = [
        "| split | images | classes | labels / image | max labels | no label | missing files | skipped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split in splits:
        s = summary_by_split[split]
        rows.append(
            f"| {split} | {s['images']} | {s['classes']} | {s['labels_per_image']:.3f} "
            f"| {s['max_labels']} | {s['images_without_labels']} "
            f"| {_files_cell(s, 'missing')} | {_files_cell(s, 'skipped')} |"
        )
    parts = ["## Splits", "", *rows]
    if not all(summary_by_split[s].get("files_checked", True) for s in splits):
        parts += ["", "Labels only: the image files were not looked at."]
    parts += ["", *_labels_per_image(summary_by_split), "", *_per_class(summary_by_split)]
    batches = summary_by_split[splits[0]].get("batches") if splits else None
    if batches:
        parts += ["", *_batches(splits[0], batches)]
    for split in splits:
        s = summary_by_split[split]
        for key, what in (("missing_examples", "Missing files"), ("skipped_examples", "Unreadable files (skipped)")):
            if s.get(key):
                parts += ["", f"{what} in {split} (first {len(s[key])}): " + ", ".join(f"`{p}`" for p in s[key])]
    return "\n".join(parts) + "\n"


def _labels_per_image(summary_by_split) -> list[str]:
    splits = list(summary_by_split)
    top = max((max(s.get("labels_per_image_counts") or {0: 0}) for s in summary_by_split.values()), default=0)
    table = ["## Labels per image", "", "| labels | " + " | ".join(splits) + " |", "|---:|" + "---:|" * len(splits)]
    for k in range(top + 1):
        cells = [str((summary_by_split[s].get("labels_per_image_counts") or {}).get(k, 0)) for s in splits]
        table.append(f"| {k} | " + " | ".join(cells) + " |")
    return table


def _per_class(summary_by_split) -> list[str]:
    splits = list(summary_by_split)
    classes: list[str] = []
    for split in splits:
        classes += [c for c in summary_by_split[split]["class_counts"] if c not in classes]
    batches = summary_by_split[splits[0]].get("batches") or {}
    per_batch = batches.get("per_class")
    extra = (
        (f" | {splits[0]} positives / batch of {batches['batch_size']} | batches with >= 3 |") if per_batch else " |"
    )
    table = [
        "## Images per class",
        "",
        "| class | " + " | ".join(splits) + extra,
        "|---|" + "---:|" * (len(splits) + (2 if per_batch else 0)),
    ]
    for name in classes:
        cells = [str(summary_by_split[s]["class_counts"].get(name, "-")) for s in splits]
        if per_batch:
            figures = per_batch.get(name, {})
            cells += [f"{figures.get('positives', 0):.2f}", f"{100 * figures.get('batches_with_3plus', 0):.1f}%"]
        table.append(f"| {name} | " + " | ".join(cells) + " |")
    return table


def _batches(split: str, b: Mapping[str, Any]) -> list[str]:
    head = [
        f"## Batches of {b['batch_size']} ({split} split, shuffled, the last partial batch "
        f"dropped; means over {b.get('num_batches', BATCHES)} batches)",
        "",
    ]
    if "note" in b:
        return head + [f"Not computed: the split {b['note']}."]
    rows = [
        ("positives per class", "positives_per_class"),
        ("classes present", "classes_present"),
        ("classes with exactly 2 positives (CD pair: no loss)", "cd_groups_2"),
        ("classes with >= 3 positives (CD groups)", "cd_groups_3plus"),
        ("share of positives in a CD group", "cd_share_of_positives"),
        ("images with >= 2 labels (ID groups)", "id_groups_2plus"),
        ("images with >= 3 labels", "id_groups_3plus"),
        ("CD pairs", "cd_pairs"),
        ("ID pairs", "id_pairs"),
    ]
    return head + ["| per batch | mean |", "|---|---:|", *[f"| {label} | {b[key]:.3f} |" for label, key in rows]]
