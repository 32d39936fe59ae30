"""Datasets by name: ``build_dataset(name, split, transform, **options)``.

A dataset builder is registered in ``mlkd.registries.DATASETS`` and called as
``builder(split, transform, **options) -> torch.utils.data.Dataset`` where ``split`` is
``"train"`` or ``"test"``, ``transform`` maps a PIL RGB image to a ``[3, H, W]`` float tensor,
and ``options`` are the config's ``data.options`` (``root`` and the like). The dataset is a
``mlkd.data.protocol.MultiLabelDataset`` (``classes``, items as in ``mlkd.data.batch``,
``labels_matrix()`` and the integrity fields).
"""

from __future__ import annotations

from typing import Any, Callable

from mlkd.registries import DATASETS


def build_dataset(name: str, split: str, transform: Callable | None = None, **options: Any) -> Any:
    """Build the registered dataset ``name`` for ``split`` ("train" or "test")."""
    return DATASETS.get(name)(split, transform, **options)


def draws_at_img_size(name: str) -> bool:
    """Whether dataset ``name`` draws its images at an ``img_size`` option that the loader fills
    from ``data.img_size`` (the builder has ``canvas_from_img_size = True``)."""
    return bool(getattr(DATASETS.get(name), "canvas_from_img_size", False))


def dataset_names() -> list[str]:
    """The registered dataset names (built-ins and imported plugins), sorted."""
    return DATASETS.names()


__all__ = ["build_dataset", "dataset_names", "draws_at_img_size"]
