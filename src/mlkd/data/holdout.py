"""``data.holdout``: a validation split carved from the training images of any dataset.

With ``data.holdout = f`` a fraction f of the train split, chosen by a permutation seeded with
``HOLDOUT_SEED`` (the same for every run and every ``train.seed``, so all methods are compared on
one split), is set aside: training uses the other images, evaluation uses the held-out ones
under the evaluation transform, and the test split is never read. Choose weights or epochs
there, then report the test split with ``data.holdout: 0``.

For the embedded mosaics, ``data.options.holdout`` is stricter: it holds out source *items*, so
no Fashion-MNIST item appears in both a training and a validation mosaic.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from mlkd.data.protocol import DatasetView
from mlkd.data.views import with_transform
from mlkd.errors import DataError

HOLDOUT_SEED = 0


def holdout_positions(
    n: int,
    fraction: float,
    entropy: Optional[Sequence[int]] = None,
    what: str = "data.holdout",
    items: str = "training images",
    error: type[Exception] = DataError,
) -> tuple[np.ndarray, np.ndarray]:
    """(kept [n - m], held out [m]) sorted positions of ``n`` items, m = round(fraction * n), from
    a permutation seeded by ``entropy`` (default ``[HOLDOUT_SEED, n]``). An empty side raises
    ``error`` naming ``what`` and the ``items``."""
    seed = np.random.SeedSequence(list(entropy) if entropy is not None else [HOLDOUT_SEED, n])
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(fraction * n))
    if not 0 < held < n:
        raise error(
            f"{what}={fraction} leaves an empty split of the {n} {items}; "
            f"use a fraction between {1 / n:.2g} and {1 - 1 / n:.4g}"
        )
    return np.sort(order[held:]), np.sort(order[:held])


class HoldoutSplit(DatasetView):
    """The items ``indices`` of ``dataset``, re-numbered 0..len-1 (the batch contract's index is
    the position here, so teacher caches and predictions line up with this split)."""

    def __init__(self, dataset: Dataset, indices: np.ndarray, split: str):
        super().__init__(dataset)
        self.indices, self.split = np.asarray(indices, dtype=np.int64), split

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        item = self.dataset[int(self.indices[position])]
        return None if item is None else (item[0], item[1], position)

    def labels_matrix(self) -> np.ndarray:
        return np.asarray(self.dataset.labels_matrix())[self.indices]

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:  # on a copy: the other split shares the dataset
        self.dataset = with_transform(self.dataset, value)


def split_train(train: Dataset, eval_transform, fraction: float) -> tuple[HoldoutSplit, HoldoutSplit]:
    """(training part, held-out part under ``eval_transform``) of the train split ``train``."""
    if not hasattr(train, "transform"):
        raise DataError("data.holdout needs a dataset with a `transform` attribute")
    keep, held = holdout_positions(len(train), fraction)
    return HoldoutSplit(train, keep, "train"), HoldoutSplit(with_transform(train, eval_transform), held, "holdout")
