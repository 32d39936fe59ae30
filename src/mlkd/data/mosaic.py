"""The embedded default dataset ``mosaic``: multi-label grids of real single-label images.

Each image is a ``grid x grid`` layout of ``cell_size`` cells; ``k`` cells (k uniform in
``[min_items, max_items]``, cells chosen at random) hold random items of the source split
(drawn with replacement), the other cells are black. The target is the union of the placed
items' classes (a class placed twice is one positive). Train mosaics use only the source's train
split, test mosaics only its test split. Sources and their splits: ``mlkd.data.sources``.

Options (``data.options``) and defaults:
``source="auto"`` (``"fashion-mnist"`` where its files are installed or ``source_dir`` is given,
else the packaged ``"digits"``: ``sources.default_source``; or name one: ``"fashion-mnist"``,
``"mnist"``, ``"digits"``), ``source_dir`` (default
``/usr/share/datasets/fashion-mnist``; alias ``root``), ``num_train=6000``, ``num_test=2000``,
``grid=2``, ``cell_size`` (28 for fashion-mnist/mnist, 16 for digits), ``min_items=1``,
``max_items=grid*grid`` (4 at grid 2), ``seed=0``, ``holdout=0`` (a fraction in [0, 1), see
below), ``cache_dir`` (default ``$MLKD_CACHE/mosaic``, else ``~/.cache/mlkd/mosaic``),
``on_bad_image`` (accepted and ignored: nothing is unreadable).

Validation split: with ``holdout=f > 0`` a fraction ``f`` of the source's *train* items (a
permutation seeded by ``seed``) is set aside; train mosaics use only the other items and the
``test`` split is composed from the held-out items. The source's test split is then never read,
so weights or lambdas can be chosen on that split without touching the test set. ``cells`` then
index the split's own pool (the kept or the held-out items).

Generation is deterministic given the options: the stream is ``SeedSequence([seed, split])``
(train 0, test 1). The result is cached as ``.npz`` (:mod:`mlkd.data.npz_cache`) named by a hash
of its key (:func:`cache_key`: the options, the SHA-256 of the source files (IDX or the packaged
digits), ``FORMAT_VERSION`` and numpy's release), which the file holds with a digest of its arrays; a file
made with another key, damaged or truncated is regenerated with a warning naming it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mlkd.data import sources
from mlkd.data.holdout import holdout_positions
from mlkd.data.npz_cache import cached_arrays, code_digest, key_name, release
from mlkd.data.protocol import BaseDataset
from mlkd.errors import ConfigError
from mlkd.fileio import file_sha256
from mlkd.registries import DATASETS

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_SPLIT_CODE = {"train": 0, "test": 1}
_KEYS = ("images", "labels", "cells", "classes")


def generate_mosaics(
    pool_images: np.ndarray,
    pool_labels: np.ndarray,
    num_classes: int,
    num: int,
    grid: int,
    min_items: int,
    max_items: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose ``num`` mosaics from a pool (vectorised).

    pool_images uint8 [M, S, S], pool_labels int [M] in [0, num_classes).
    Returns images uint8 [num, grid*S, grid*S], labels uint8 [num, q] (0/1) and cells int32
    [num, grid*grid] (row-major cell -> pool index, -1 for an empty cell).
    """
    m, s = len(pool_images), pool_images.shape[1]
    g = grid * grid
    counts = rng.integers(min_items, max_items + 1, size=num)  # [num]
    rank = np.argsort(np.argsort(rng.random((num, g)), axis=1), axis=1)  # random cell order
    picks = rng.integers(0, m, size=(num, g))  # [num, g]
    cells = np.where(rank < counts[:, None], picks, -1).astype(np.int32)
    # Index -1 selects the appended black cell / all-zero label row.
    padded = np.concatenate([pool_images, np.zeros((1, s, s), np.uint8)])
    tiles = padded[cells].reshape(num, grid, grid, s, s)
    images = np.ascontiguousarray(tiles.transpose(0, 1, 3, 2, 4)).reshape(num, grid * s, grid * s)
    onehot = np.zeros((m + 1, num_classes), np.uint8)
    onehot[np.arange(m), pool_labels] = 1
    labels = onehot[cells].max(axis=1)  # [num, q]
    return images, labels, cells


class MosaicDataset(BaseDataset):
    """Mosaic images uint8 [N, H, W] (grayscale) with targets [N, q] (float 0/1).

    ``cells`` int32 [N, grid*grid] records which item of the source split's pool fills each cell
    (row-major, -1 = empty). ``__getitem__(i)`` returns ``(image [3, H, W] float32 in [0, 1],
    target [q] float32, i)``; with a transform, the transform gets a PIL RGB image.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        cells: np.ndarray,
        classes: list[str],
        split: str,
        options: dict[str, Any],
        transform: Callable | None = None,
        cache_path: Path | None = None,
    ):
        self.images = images
        self.targets = torch.from_numpy(labels.astype(np.float32))
        self.cells = cells
        self.classes = list(classes)
        self.split = split
        self.options = options
        self.transform = transform
        self.cache_path = cache_path
        self.grid = options["grid"]
        self.cell_size = options["cell_size"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        pixels = self.images[i]
        if self.transform is None:
            image = torch.from_numpy(pixels).float().div_(255.0).unsqueeze(0).repeat(3, 1, 1)
        else:
            from PIL import Image

            image = self.transform(Image.fromarray(pixels, mode="L").convert("RGB"))
        return image, self.targets[i], i

    def labels_matrix(self) -> np.ndarray:
        """The 0/1 targets as uint8 [N, q]."""
        return self.targets.numpy().astype(np.uint8)


def label_stats(labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Summary of a 0/1 label matrix [N, q]: labels per image (mean, min, max), images with
    no label, and per-class positive counts {class: count}."""
    labels = np.asarray(labels)
    per_image = labels.sum(axis=1)
    return {
        "num_images": int(len(labels)),
        "labels_per_image": float(per_image.mean()) if len(labels) else 0.0,
        "min_labels": int(per_image.min()) if len(labels) else 0,
        "max_labels": int(per_image.max()) if len(labels) else 0,
        "no_label_images": int((per_image == 0).sum()),
        "class_counts": {c: int(n) for c, n in zip(classes, labels.sum(axis=0))},
    }


def _int_option(opts: dict, key: str, low: int, high: int | None = None) -> int:
    value = opts[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"mosaic option {key} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"mosaic option {key} must be {bound}, got {value}")
    return int(value)


def resolve_options(**options: Any) -> dict[str, Any]:
    """Fill defaults and validate the mosaic options; a ConfigError names a bad key."""
    known = {
        "source",
        "source_dir",
        "root",
        "num_train",
        "num_test",
        "grid",
        "cell_size",
        "min_items",
        "max_items",
        "seed",
        "holdout",
        "cache_dir",
        "on_bad_image",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown mosaic option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if options.get("root") is not None and options.get("source_dir") is not None:
        raise ConfigError("give the mosaic source folder as source_dir or root, not both")
    source = options.get("source", "auto")
    if source == "auto":  # fashion-mnist where installed (or source_dir given), else the packaged digits
        source = sources.default_source(options.get("source_dir") or options.get("root"))
    if source not in sources.SOURCES:
        raise ConfigError(f"unknown mosaic source {source!r}; known: auto, {', '.join(sorted(sources.SOURCES))}")
    opts = {
        "source": source,
        "source_dir": options.get("source_dir") or options.get("root"),
        "num_train": options.get("num_train", 6000),
        "num_test": options.get("num_test", 2000),
        "grid": options.get("grid", 2),
        "cell_size": (
            options["cell_size"] if options.get("cell_size") is not None else 16 if source == "digits" else 28
        ),
        "min_items": options.get("min_items", 1),
        "seed": options.get("seed", 0),
        "holdout": options.get("holdout", 0.0),
    }
    grid = _int_option(opts, "grid", 1)
    opts["max_items"] = options.get("max_items", min(4, grid * grid))
    for key in ("num_train", "num_test", "cell_size"):
        _int_option(opts, key, 1)
    _int_option(opts, "max_items", 1, grid * grid)
    _int_option(opts, "min_items", 0, opts["max_items"])
    _int_option(opts, "seed", 0)
    holdout = opts["holdout"]
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ConfigError(
            f"mosaic option holdout must be a fraction in [0, 1) of the source's "
            f"train items set aside for a validation split, got {holdout!r}"
        )
    opts["holdout"] = float(holdout)
    if source == "digits":
        opts["source_dir"] = None  # not used; kept out of the cache key
    else:
        opts["source_dir"] = str(Path(opts["source_dir"] or sources.DEFAULT_SOURCE_DIR).expanduser().resolve())
    cache_dir = options.get("cache_dir")
    if cache_dir is None:
        root = os.environ.get("MLKD_CACHE")
        cache_dir = Path(root) / "mosaic" if root else Path.home() / ".cache" / "mlkd" / "mosaic"
    opts["cache_dir"] = Path(cache_dir).expanduser()
    return opts


def source_identity(opts: dict[str, Any], split: str) -> dict[str, str]:
    """What identifies the items of ``split``'s pool: each IDX file's SHA-256 (the train files
    under holdout), or for ``digits`` the SHA-256 of the packaged file (both splits, fixed)."""
    if opts["source"] == "digits":
        return {sources.DIGITS_ASSET.name: file_sha256(sources.DIGITS_ASSET)}
    files = sources.idx_paths(opts["source_dir"], "train" if opts["holdout"] else split)
    return {path.name: file_sha256(path) for path in files}


def cache_key(opts: dict[str, Any], split: str) -> dict[str, Any]:
    """Everything that determines one split's mosaics: the options but ``cache_dir``, the split
    and its size, the source's identity, ``FORMAT_VERSION``, numpy's release and a digest of the
    drawing code (this module and ``sources``)."""
    key = {k: v for k, v in opts.items() if k not in ("cache_dir", "num_train", "num_test")}
    key.update(split=split, num=opts[f"num_{split}"], format=FORMAT_VERSION)
    key.update(source_files=source_identity(opts, split), numpy=release("numpy"))
    key.update(code=code_digest(sys.modules[__name__], sources))
    return key


def _check_cache(num: int, side: int, cells: int) -> Callable[[dict], None]:
    def check(arrays: dict) -> None:
        images, labels = arrays["images"], arrays["labels"]
        if (
            images.shape != (num, side, side)
            or images.dtype != np.uint8
            or labels.shape != (num, len(arrays["classes"]))
            or arrays["cells"].shape != (num, cells)
        ):
            raise ValueError(f"unexpected shapes {images.shape}, {labels.shape}, {arrays['cells'].shape}")

    return check


def source_pool(split: str, opts: dict[str, Any]) -> sources.Source:
    """The items ``split``'s mosaics are drawn from (see "Validation split" above).

    Without holdout: the source's own split. With ``holdout=f``: the source's train items,
    permuted by ``SeedSequence([seed, 2])``; the first ``round(f * M)`` form the ``test`` pool and
    the rest the ``train`` pool.
    """
    if not opts["holdout"]:
        return sources.load_source(opts["source"], split, opts["source_dir"], opts["cell_size"])
    full = sources.load_source(opts["source"], "train", opts["source_dir"], opts["cell_size"])
    kept, held = holdout_positions(
        len(full.labels),
        opts["holdout"],
        [opts["seed"], 2],
        "mosaic option holdout",
        f"{opts['source']} train items",
        ConfigError,
    )
    keep = held if split == "test" else kept
    return sources.Source(full.name, split, np.ascontiguousarray(full.images[keep]), full.labels[keep], full.classes)


def build_mosaic_arrays(split: str, opts: dict[str, Any]) -> tuple[dict[str, np.ndarray], Path]:
    """Load ``split``'s mosaics from the cache, or generate and cache them.

    Returns {"images": uint8 [N, H, W], "labels": uint8 [N, q], "cells": int32 [N, grid*grid],
    "classes": str [q]} and the cache path.
    """
    num, grid = opts[f"num_{split}"], opts["grid"]
    key = cache_key(opts, split)
    path = opts["cache_dir"] / f"mosaic-{opts['source']}-{split}-{key_name(key)}.npz"

    def generate() -> dict[str, np.ndarray]:
        start = time.perf_counter()
        src = source_pool(split, opts)
        rng = np.random.default_rng(np.random.SeedSequence([opts["seed"], _SPLIT_CODE[split]]))
        images, labels, cells = generate_mosaics(
            src.images, src.labels, len(src.classes), num, grid, opts["min_items"], opts["max_items"], rng
        )
        log.info("generated %d %s mosaics from %s in %.2fs", num, split, opts["source"], time.perf_counter() - start)
        return {"images": images, "labels": labels, "cells": cells, "classes": np.array(src.classes)}

    check = _check_cache(num, grid * opts["cell_size"], grid * grid)
    return cached_arrays(path, _KEYS, check, "mosaic", key, generate), path


@DATASETS.register("mosaic")
def build_mosaic(split: str, transform: Callable | None = None, **options: Any) -> MosaicDataset:
    """Build the ``split`` ("train"/"test") mosaic dataset; options as in the module docstring."""
    if split not in _SPLIT_CODE:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    opts = resolve_options(**options)
    arrays, path = build_mosaic_arrays(split, opts)
    return MosaicDataset(
        arrays["images"],
        arrays["labels"],
        arrays["cells"],
        [str(c) for c in arrays["classes"]],
        split,
        opts,
        transform,
        path,
    )
