"""Samplers and the plain facts they need: which rank of how many (``DistInfo``), and which
signals stop a run (``STOP_SIGNALS``; loader workers ignore them).

``ShardSampler`` splits evaluation across ranks; ``ResumableSampler`` lets a pre-empted epoch
continue mid-way (``mlkd.engine.preemption``). The engine re-exports all of them.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from itertools import islice

from torch.utils.data import Sampler

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


class ShardSampler(Sampler[int]):
    """Rank r of W sees indices r, r+W, r+2W, ... exactly once: no padding, no duplicates.

    For evaluation: the shards together cover every sample exactly once.
    """

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = range(rank, length, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ResumableSampler(Sampler):
    """Wraps the training sampler; ``start`` (in samples) skips the beginning of the epoch's
    order once, to continue a pre-empted epoch. ``set_epoch`` is forwarded. ``tag_epoch``:
    yield ``(index, epoch)`` pairs (for ``mlkd.data.loaders.ItemSeeded``)."""

    def __init__(self, sampler: Sampler, tag_epoch: bool = False):
        self.sampler, self.start, self.epoch, self.tag_epoch = sampler, 0, 0, tag_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        order = islice(iter(self.sampler), self.start, None)
        return ((index, self.epoch) for index in order) if self.tag_epoch else order

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)
