"""The dataset registry and ``build_dataset``.

A dataset builder is registered by name and called as
``builder(split, transform, **options) -> torch.utils.data.Dataset`` where ``split`` is
``"train"`` or ``"test"``, ``transform`` maps a PIL RGB image to a ``[3, H, W]`` float tensor,
and ``options`` are the config's ``data.options`` (``root`` and the like). The dataset is a
``mlkd.data.protocol.MultiLabelDataset`` (``classes``, items as in ``mlkd.data.batch``,
``labels_matrix()`` and the integrity fields).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from mlkd.registry import Registry

DATASETS = Registry("dataset")

# Modules whose import registers their datasets (imported on first use).
_DATASET_MODULES = ("mosaic", "voc", "coco", "nuswide", "listfile", "scenes")


def _load_all() -> None:
    for module in _DATASET_MODULES:
        try:
            importlib.import_module(f"mlkd.data.{module}")
        except ModuleNotFoundError as err:  # a module not written yet must not hide the others
            if err.name != f"mlkd.data.{module}":
                raise


def build_dataset(name: str, split: str, transform: Callable | None = None, **options: Any):
    """Build the registered dataset ``name`` for ``split`` ("train" or "test")."""
    _load_all()
    return DATASETS.get(name)(split, transform, **options)


def draws_at_img_size(name: str) -> bool:
    """Whether dataset ``name`` draws its images at an ``img_size`` option that the loader fills
    from ``data.img_size`` (the builder has ``canvas_from_img_size = True``)."""
    _load_all()
    return bool(getattr(DATASETS.get(name), "canvas_from_img_size", False))


def dataset_names() -> list[str]:
    _load_all()
    return DATASETS.names()
