"""Figures of the ``coco_scenes`` dataset for docs/scenes.md and the README.

    PYTHONPATH=src python scripts/scenes_report.py [docs/figures/coco_scenes.png]

Generates the default splits (4,000 train / 1,500 test at 128 px) into a fresh cache folder and
prints, as markdown: the generation time per split, the label statistics beside those of all
40,137 real COCO val label sets, and the class -> glyph table; saves a figure of example
training scenes with their labels.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlkd.analysis.scene_figure import scene_figure
from mlkd.data import build_dataset
from mlkd.data.coco import COCO_CATEGORIES
from mlkd.data.coco_label_sets import label_matrix, load_label_sets
from mlkd.data.glyphs import CLASS_GLYPHS


def batch_stats(labels: np.ndarray, rng: np.random.Generator, batches: int = 2000) -> tuple[float, float]:
    """Mean number of classes per random batch of 64 with >= 1 and with >= 3 positives (a CD
    group of the official variant adds a term only from 3 on: n < 2 is skipped, n = 2 is zero)."""
    counts = np.stack([labels[rng.choice(len(labels), 64, replace=False)].sum(0) for _ in range(batches)])
    return float((counts >= 1).sum(1).mean()), float((counts >= 3).sum(1).mean())


def stats_row(name: str, labels: np.ndarray) -> str:
    per_class = labels.sum(0)
    share = per_class / len(labels)
    any1, cd = batch_stats(labels, np.random.default_rng(0))
    return (
        f"| {name} | {len(labels):,} | {labels.sum(1).mean():.3f} | {labels.sum(1).max()} "
        f"| {share[0]:.1%} | {int((share < 0.05).sum())} | {per_class.min()} | {any1:.1f} | {cd:.1f} |"
    )


def main(out: str = "docs/figures/coco_scenes.png") -> None:
    with tempfile.TemporaryDirectory() as cache:
        timed = {}
        for split in ("train", "test"):
            start = time.perf_counter()
            timed[split] = (build_dataset("coco_scenes", split, None, cache_dir=cache), time.perf_counter() - start)
        start = time.perf_counter()
        build_dataset("coco_scenes", "train", None, cache_dir=cache)
        cached = time.perf_counter() - start
    print("| split | images | generated and cached in | per image |\n|---|---:|---:|---:|")
    for split, (ds, seconds) in timed.items():
        print(f"| {split} | {len(ds):,} | {seconds:.1f} s | {1000 * seconds / len(ds):.1f} ms |")
    print(f"\nloading the cached train split: {cached:.2f} s; fonts: {', '.join(ds.options['fonts'])}\n")
    print(
        "| label sets | images | labels / image | max | person | classes < 5% | fewest positives of a class "
        "| classes present per batch of 64 | classes with >= 3 positives per batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(stats_row("COCO 2014 val (all)", label_matrix(load_label_sets())))
    for split, (ds, _) in timed.items():
        print(stats_row(f"coco_scenes {split}", ds.labels_matrix()))
    print("\n| id | class | glyph | code point | emoji name |\n|---:|---|---|---|---|")
    for cid, name in COCO_CATEGORIES:
        g = CLASS_GLYPHS[name]
        mark = " (stand-in)" if g.stand_in else ""
        print(f"| {cid} | {name} | {chr(g.codepoint)} | U+{g.codepoint:04X} | {g.name}{mark} |")
    scene_figure(timed["train"][0], Path(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
