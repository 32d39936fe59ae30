"""Deterministic views of a training set, for the teacher-output cache.

``SeededViews(dataset, seed)[(i, v)]`` is item i with the transform's random draws seeded by
(seed, v, i): the same augmented image whenever view v of image i is asked for, in any worker
and process. ``ViewSampler`` turns an index sampler into one that yields (index, view) with
view = epoch mod views. ``view_dataset`` picks the training images as a cache policy sees them:
``eval`` (the evaluation transform) or ``train`` (seeded augmentations).
"""

from __future__ import annotations

import contextlib
import copy
import random
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mlkd.data.protocol import DatasetView
from mlkd.errors import ConfigError


@contextlib.contextmanager
def seeded(seed: int, view: int, index: int) -> Iterator[None]:
    """torch / random / numpy generators seeded by (seed, view, index) inside the block; the
    previous states are restored after it (the training RNG streams are not disturbed)."""
    state = int(np.random.SeedSequence([seed, view, index]).generate_state(1, np.uint64)[0] >> 1)
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(state)
        random.seed(state)
        np.random.seed(state % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SeededViews(DatasetView):
    """``dataset[(i, v)]`` is item i of ``dataset`` with its transform's random draws seeded by
    (seed, v, i): the same augmented image every time view v of image i is asked for."""

    def __init__(self, dataset: Dataset, seed: int):
        super().__init__(dataset)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, view = key if isinstance(key, tuple) else (key, 0)
        with seeded(self.seed, view, index):
            return self.dataset[index]

    @property
    def transform(self):
        return self.dataset.transform


class ViewSampler(Sampler):
    """Wraps an index sampler: yields (index, view) with view = epoch mod ``views``
    (``set_epoch`` is forwarded to the wrapped sampler)."""

    def __init__(self, sampler: Sampler, views: int, view: int = 0):
        self.sampler, self.views, self.view = sampler, views, view

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        self.view = epoch % self.views

    def __iter__(self):
        view = self.view
        return ((int(i), view) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def with_transform(dataset: Dataset, transform: Callable) -> Dataset:
    """A shallow copy of ``dataset`` whose items go through ``transform`` (the original keeps its own)."""
    copied = copy.copy(dataset)
    copied.transform = transform
    return copied


def view_dataset(train_set: Dataset, eval_transform: Callable, policy: str, seed: int) -> Dataset:
    """The training images as the cache (and the student) see them under ``policy``."""
    if policy == "eval":
        if not hasattr(train_set, "transform"):
            raise ConfigError("distill.cache_view=eval needs a dataset with a `transform` attribute")
        return with_transform(train_set, eval_transform)
    return SeededViews(train_set, seed)
