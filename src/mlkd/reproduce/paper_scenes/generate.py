"""Drawing a ``coco_scenes`` split in parallel into the dataset's own cache file.

Image i of a split is drawn from its own generator (``SeedSequence([seed, split, i])``,
:mod:`mlkd.data.scenes`), so drawing chunks of positions in worker processes gives exactly the
arrays of the serial ``mlkd.data.scenes.build_arrays``; the result is saved under the name that
function looks for (``mlkd.data.scenes.cache_path``) with the same key and digest, so the engine
then loads it. A file already there counts only when its key and digest hold (checked streaming).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlkd.data import scenes
from mlkd.data.coco_label_sets import label_matrix, load_label_sets
from mlkd.data.npz_cache import save_npz, verify_npz

log = logging.getLogger(__name__)

_CHUNK = 128
_WORKER: dict[str, Any] = {}


def _init(split: str, opts: dict) -> None:
    """Worker set-up: the split's options, label sets, positions and sprites (once each)."""
    _WORKER.update(
        split=split,
        opts=opts,
        labels=load_label_sets(),
        index=scenes.split_indices(split, opts),
        sets=scenes.sprite_sets(opts["fonts"], opts.get("glyph_pack")),
    )


def _draw_chunk(start: int) -> tuple[int, np.ndarray]:
    """(start, images uint8 [n, S, S, 3]) of positions start .. start + _CHUNK - 1."""
    w = _WORKER
    stop = min(start + _CHUNK, len(w["index"]))
    images = [
        scenes.draw(w["split"], i, w["labels"][w["index"][i]], w["opts"], w["sets"]).image for i in range(start, stop)
    ]
    return start, np.stack(images)


def draw_split(split: str, opts: dict, processes: int) -> dict[str, np.ndarray]:
    """The arrays of ``scenes.build_arrays(split, opts)`` ({"images" uint8 [N, S, S, 3],
    "labels" uint8 [N, 80], "source_index" int64 [N]}), drawn by ``processes`` processes."""
    num, size = opts[f"num_{split}"], opts["img_size"]
    images = np.zeros((num, size, size, 3), np.uint8)
    starts = range(0, num, _CHUNK)
    if processes <= 1:
        _init(split, opts)
        chunks = map(_draw_chunk, starts)
        for start, part in chunks:
            images[start : start + len(part)] = part
    else:
        with multiprocessing.get_context("fork").Pool(processes, _init, (split, opts)) as pool:
            for start, part in pool.imap_unordered(_draw_chunk, starts):
                images[start : start + len(part)] = part
    index = scenes.split_indices(split, opts)
    label_sets = load_label_sets()
    return {
        "images": images,
        "labels": label_matrix([label_sets[s] for s in index]),
        "source_index": index.astype(np.int64),
    }


def ensure_split(split: str, options: dict, processes: int) -> tuple[Path, float, bool]:
    """Make sure ``split`` of ``coco_scenes`` with ``options`` (``data.options`` plus
    ``img_size``) is in its cache: (cache file, seconds taken, whether it was drawn now)."""
    start = time.perf_counter()
    opts = scenes.resolve_options(**options)
    key = scenes.cache_key(split, opts)
    path = scenes.cache_path(split, opts, key)
    if verify_npz(path, scenes.CACHE_ARRAYS, "coco_scenes", key):
        return path, time.perf_counter() - start, False  # drawn before, intact
    arrays = draw_split(split, opts, processes)
    save_npz(path, arrays, "coco_scenes", key)
    seconds = time.perf_counter() - start
    log.info(
        "drew %d %s scenes at %d px with %d processes in %.1f s -> %s",
        opts[f"num_{split}"],
        split,
        opts["img_size"],
        processes,
        seconds,
        path,
    )
    return path, seconds, True
