"""What every mlkd dataset provides: :class:`MultiLabelDataset`.

Datasets derive from :class:`BaseDataset` (the integrity fields' defaults: nothing missing,
nothing skipped); wrappers (a holdout split, seeded views, per-item seeds) derive from
:class:`DatasetView`, whose fields and other attributes are the wrapped dataset's.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from torch.utils.data import Dataset

from mlkd.data.batch import Item


@runtime_checkable
class MultiLabelDataset(Protocol):
    """A split of multi-label images (``mlkd.data.batch``'s contract).

    ``dataset[i]`` is ``(image [3, H, W] float, target [q] float 0/1, i)``, or None for an
    unreadable image skipped under ``on_bad_image: skip``. ``classes`` names the q targets in
    order; ``labels_matrix()`` is every target, uint8 [N, q]. The integrity fields (defaults in
    :class:`BaseDataset`): ``files_checked`` (False when image files were not looked for: the
    labels-only mode), ``missing`` / ``missing_files`` (listed but absent on disk, dropped),
    ``unreadable_files`` (dropped by ``verify_images``), ``skipped`` (unreadable images met
    while loading, in this process).
    """

    classes: list[str]
    files_checked: bool
    missing: int
    missing_files: Sequence[str]
    skipped: int
    unreadable_files: Sequence[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Item: ...

    def labels_matrix(self) -> np.ndarray: ...


class BaseDataset(Dataset):
    """Defaults of :class:`MultiLabelDataset`'s integrity fields (datasets without image files
    have nothing to report); ``labels_matrix`` reads every target (override it: faster)."""

    classes: list[str]
    files_checked: bool = True
    missing: int = 0
    missing_files: Sequence[str] = ()
    skipped: int = 0
    unreadable_files: Sequence[str] = ()

    def labels_matrix(self) -> np.ndarray:
        rows = [np.asarray(item[1]) for item in (self[i] for i in range(len(self))) if item]
        return np.stack(rows).astype(np.uint8) if rows else np.zeros((0, len(self.classes)), dtype=np.uint8)


def _forwarded(name: str) -> property:
    return property(lambda self: getattr(self.dataset, name), doc=f"The wrapped dataset's ``{name}``.")


class DatasetView(Dataset):
    """A wrapper of ``dataset``: same classes, the wrapped dataset's integrity fields (those of
    the whole split) and ``labels_matrix``; other attributes it lacks are looked up there too."""

    files_checked = _forwarded("files_checked")
    missing = _forwarded("missing")
    missing_files = _forwarded("missing_files")
    skipped = _forwarded("skipped")
    unreadable_files = _forwarded("unreadable_files")

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.classes = list(dataset.classes)

    def labels_matrix(self) -> np.ndarray:
        return self.dataset.labels_matrix()

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "dataset":  # unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(self.dataset, name)
