"""The real label sets of the 40,137 labelled MS-COCO 2014 val images, shipped with mlkd.

``assets/coco2014_val_label_sets.npz`` is derived from the official L2D code's
``appendix/val_anno.json`` (MIT; labels from the COCO 2014 annotations, CC BY 4.0) by
``scripts/derive_coco_label_sets.py``; ``assets/README.md`` carries the attribution. Its arrays:
``image_ids`` int32 [N] (the COCO image id of ``COCO_val2014_<id>.jpg``, in the JSON's order),
``counts`` uint8 [N] (labels per image), ``labels`` uint8 [sum(counts)] (each image's labels,
ascending, as indices into :data:`mlkd.data.coco.COCO_CLASSES`, i.e. category-id order) and
``classes`` str [80].
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from mlkd.data.coco import COCO_CLASSES, alphabetical_to_category_order
from mlkd.errors import DataError

ASSET = Path(__file__).with_name("assets") / "coco2014_val_label_sets.npz"
_FILE_PREFIX = "COCO_val2014_"


def derive_from_official_json(path: Path) -> dict[str, np.ndarray]:
    """The shipped arrays (see the module docstring) from the official list JSON
    ``[{"file_name": "COCO_val2014_<id>.jpg", "labels": [alphabetical indices]}]``."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the COCO label-set JSON {path}: {err}") from err
    to_ours = np.asarray(alphabetical_to_category_order(), dtype=np.uint8)
    ids, counts, labels = [], [], []
    for k, entry in enumerate(entries):
        name, raw = entry.get("file_name", ""), entry.get("labels")
        if not name.startswith(_FILE_PREFIX) or not raw or len(set(raw)) != len(raw):
            raise DataError(
                f"entry {k} of {path} must be {{'file_name': 'COCO_val2014_<id>.jpg', "
                f"'labels': [distinct indices]}}, got {entry!r:.80}"
            )
        ids.append(int(name[len(_FILE_PREFIX) :].split(".")[0]))
        mapped = np.sort(to_ours[np.asarray(raw)])
        counts.append(len(mapped))
        labels.append(mapped)
    return {
        "image_ids": np.asarray(ids, np.int32),
        "counts": np.asarray(counts, np.uint8),
        "labels": np.concatenate(labels).astype(np.uint8),
        "classes": np.array(COCO_CLASSES),
    }


@functools.lru_cache(maxsize=1)
def load_label_sets(path: Path = ASSET) -> tuple[tuple[int, ...], ...]:
    """The N label sets, each a sorted tuple of category-id-order class indices (N = 40,137)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            counts, labels, classes = data["counts"], data["labels"], data["classes"]
    except (OSError, KeyError, ValueError) as err:
        raise DataError(
            f"cannot read the shipped COCO label sets {path} ({err}); reinstall "
            "mlkd or rebuild it with scripts/derive_coco_label_sets.py"
        ) from err
    if list(classes) != COCO_CLASSES or int(counts.sum()) != len(labels):
        raise DataError(
            f"{path} does not match mlkd's COCO class list or is truncated; rebuild "
            "it with scripts/derive_coco_label_sets.py"
        )
    ends = np.cumsum(counts.astype(np.int64))
    return tuple(tuple(int(c) for c in labels[e - n : e]) for n, e in zip(counts, ends))


def label_matrix(label_sets, num_classes: int = len(COCO_CLASSES)) -> np.ndarray:
    """0/1 uint8 [len(label_sets), num_classes] of index label sets."""
    out = np.zeros((len(label_sets), num_classes), np.uint8)
    for i, labels in enumerate(label_sets):
        out[i, list(labels)] = 1
    return out
