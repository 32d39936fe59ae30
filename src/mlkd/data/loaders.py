"""Datasets and DataLoaders from a DataConfig (the same code under torchrun and alone)."""

from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader, DistributedSampler

from mlkd.config import DataConfig
from mlkd.data import build_dataset, draws_at_img_size
from mlkd.data.batch import collate
from mlkd.data.holdout import split_train
from mlkd.data.protocol import DatasetView
from mlkd.data.samplers import STOP_SIGNALS, DistInfo, ResumableSampler, ShardSampler
from mlkd.data.transforms import build_transform
from mlkd.data.views import seeded
from mlkd.errors import DataError


def build_datasets(cfg: DataConfig):
    """(train, test) datasets with the recipe's train / eval transforms; same class list.
    With ``data.holdout`` the "test" side is a validation split of the train images
    (``mlkd.data.holdout``).

    With ``data.verify_images`` every image of both splits is decoded here, before any model
    is built (``MultiLabelImageDataset.verify_images``: an ``error`` policy stops on the first
    unreadable file, ``skip`` drops them); datasets without image files are not affected.
    """
    options = {"on_bad_image": cfg.on_bad_image, **cfg.options}
    if draws_at_img_size(cfg.name):  # generated data is drawn at the model's input size
        options.setdefault("img_size", cfg.img_size)
    eval_transform = build_transform(cfg.recipe, cfg.img_size, False, cfg.normalize)
    train = build_dataset(cfg.name, "train", build_transform(cfg.recipe, cfg.img_size, True, cfg.normalize), **options)
    test = None if cfg.holdout else build_dataset(cfg.name, "test", eval_transform, **options)
    if cfg.verify_images:
        for dataset in (train, test):
            if hasattr(dataset, "verify_images"):
                dataset.verify_images(cfg.num_workers)
    if cfg.holdout:  # evaluate on held-out training images; the test split is not read
        train, test = split_train(train, eval_transform, cfg.holdout)
    if list(train.classes) != list(test.classes):
        raise DataError(f"dataset {cfg.name!r}: train and test splits have different class lists")
    for split, dataset in (("train", train), ("test", test)):
        if len(dataset) == 0:
            raise DataError(f"dataset {cfg.name!r}: the {split} split is empty (check data.options)")
    return train, test


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A DataLoader worker's ``worker_init_fn``: SIGINT and the pre-emption signals are the main
    process's to handle. SLURM (time limit, ``scancel``) and Ctrl-C signal the whole process
    group; a worker killed by them would end the run with a DataLoader error instead of the
    main process's checkpoint and exit status 75. Workers still end with the main process."""
    for signum in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(signum, signal.SIG_IGN)


class ItemSeeded(DatasetView):
    """The training set read through ``(index, epoch)`` keys, each item's random draws seeded by
    (seed, epoch, index) (``mlkd.data.views.seeded``; the worker's streams are restored after
    it). An item's augmentation then does not depend on the number of workers, on which worker
    loads it, on what that worker loaded before (persistent workers keep their RNG
    across epochs), or on whether the process was resumed. Other attributes are the dataset's."""

    def __init__(self, dataset, seed: int):
        super().__init__(dataset)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        with seeded(self.seed, epoch, int(index)):
            return self.dataset[index]


def _loader(
    dataset,
    batch_size: int,
    sampler,
    workers: int,
    drop_last: bool,
    pin: bool,
    generator: torch.Generator | None = None,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=workers > 0,
        worker_init_fn=ignore_stop_signals,
    )


def train_loader(dataset, cfg: DataConfig, info: DistInfo, seed: int, pin: bool, wrap_sampler=None) -> DataLoader:
    """Shuffled with (seed, epoch) via DistributedSampler.set_epoch; last partial batch dropped.
    Augmentation is a function of (seed, epoch, item) (``ItemSeeded``) whatever ``num_workers``
    is (0 included): a resumed run, stopped at an epoch's end or mid-epoch, draws exactly what an
    uninterrupted one does, and so does a run with another number of workers.

    Each rank takes ``batch_size // world_size`` images, so the global batch is ``batch_size``.
    ``wrap_sampler``: optional ``sampler -> sampler`` (the teacher cache's view sampler). The
    outermost sampler is a ``ResumableSampler`` (a pre-empted epoch continues mid-way).
    """
    per_rank = max(1, cfg.batch_size // info.world_size)
    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed, drop_last=True
    )
    drop_last = len(sampler) >= per_rank
    if wrap_sampler is not None:
        sampler = wrap_sampler(sampler)
    # Per-item seeds whatever the number of workers (ItemSeeded; the teacher cache's views are
    # seeded already) and a generator of the loader's own for the base seed iter() draws, so
    # that the global RNG (dropout) is drawn by the model only.
    tag = wrap_sampler is None
    return _loader(
        ItemSeeded(dataset, seed) if tag else dataset,
        per_rank,
        ResumableSampler(sampler, tag_epoch=tag),
        cfg.num_workers,
        drop_last,
        pin,
        torch.Generator().manual_seed(seed),
    )


def eval_loader(dataset, cfg: DataConfig, info: DistInfo, pin: bool) -> DataLoader:
    """In order; rank r takes samples r, r+W, ... so every sample is evaluated exactly once."""
    batch = cfg.eval_batch_size or cfg.batch_size
    sampler = ShardSampler(len(dataset), info.rank, info.world_size)
    return _loader(dataset, batch, sampler, cfg.num_workers, False, pin)


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Move images / targets to ``device`` without blocking the host."""
    images = batch["images"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, batch["targets"].to(device, non_blocking=True)
