"""The shared base of the image-file datasets (VOC, COCO, NUS-WIDE, list files).

A :class:`MultiLabelImageDataset` holds ``samples: list[(path, label_index_tuple)]`` and
``classes`` (the order of the targets). ``__getitem__(i)`` follows ``mlkd.data.batch``:
``(image [3, H, W] float, target [q] float 0/1, i)``.

Two policies, both options of every builder:

- ``on_missing`` ("error" | "skip" | "unchecked"): files listed by the annotations but absent on
  disk are found at construction (one ``os.path.isfile`` per image). "error" raises a DataError naming
  how many and which; "skip" drops them, counts them in ``missing`` / ``missing_files`` and logs a
  warning; "unchecked" does not look at the image files at all (``files_checked`` is False): the
  labels-only mode of ``mlkd data summary --labels-only``, for inspecting a dataset's labels
  before its images are downloaded (a run would meet an absent file as an unreadable image).
- ``on_bad_image`` ("error" | "skip"): an image that cannot be decoded when it is loaded (corrupt,
  truncated, deleted since construction). "error" raises a DataError naming the file (a plain
  ``DataError`` that the DataLoader re-raises in the main process, not a worker traceback of
  PIL internals); "skip" logs a warning, increments ``skipped`` and returns ``None`` so that
  ``collate`` drops the item and counts it. In worker processes ``skipped`` grows in the worker's
  copy only: the batches' ``skipped`` counts are the reliable total. Truncated files are errors
  as long as nobody sets PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` (the official code did; mlkd
  never does).

Decoding happens when an image is loaded, so without a pre-flight check an unreadable image
stops an ``error`` run only when training (or the first evaluation) reaches it.
``verify_images`` is that pre-flight check (``data.verify_images: true``): it decodes every
image once, in threads, before any model is built; "error" raises on the first bad file (in
sample order), "skip" drops the bad samples and lists them in ``unreadable_files``. It costs
one full decode per image (COCO's 122k images: minutes), so it is off by default; the
existence check at construction is always made.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from mlkd.data.protocol import BaseDataset
from mlkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

POLICIES = ("error", "skip")
MISSING_POLICIES = (*POLICIES, "unchecked")
Sample = tuple[str, tuple[int, ...]]


def check_policy(value: str, option: str, dataset: str, allowed: Sequence[str] = POLICIES) -> str:
    """Return ``value`` if it is one of ``allowed``; a ConfigError otherwise."""
    if value not in allowed:
        raise ConfigError(f"dataset {dataset!r}: option {option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def dataset_builder(name: str) -> Callable:
    """Decorator for ``builder(split, transform, **options)``: a missing or unknown option is a
    ConfigError naming the dataset and its valid options, not a bare TypeError."""

    def wrap(func: Callable) -> Callable:
        signature = inspect.signature(func)
        valid = ", ".join(list(signature.parameters)[2:])

        @functools.wraps(func)
        def builder(split: str, transform: Callable | None = None, **options):
            try:
                signature.bind(split, transform, **options)
            except TypeError as err:
                raise ConfigError(f"dataset {name!r}: {err} in data.options; its options are: {valid}") from None
            return func(split, transform, **options)

        return builder

    return wrap


def read_text(path: str | os.PathLike, what: str) -> str:
    """A UTF-8 text file's contents (BOM dropped); a DataError naming ``what`` and the path."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {what} {path}: {err}") from err


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """The non-empty, stripped lines of a text file; a DataError if it cannot be read."""
    return [line.strip() for line in read_text(path, what).splitlines() if line.strip()]


# Grayscale modes deeper than 8 bits (16-bit PNG / TIFF open as I;16; "I" is read as 16-bit).
_DEEP_GRAY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image to RGB (raises whatever PIL raises)."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB. 16-bit grayscale is scaled (round(v * 255 / 65535), "I" values
    clipped to [0, 65535] first): PIL's own ``convert`` clips it at 255, so a 16-bit image
    would come out nearly black and white. Other modes go through ``convert("RGB")``."""
    if image.mode in _DEEP_GRAY:
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        image = Image.fromarray(np.rint(values / 257.0).astype(np.uint8))
    return image.convert("RGB")


class MultiLabelImageDataset(BaseDataset):
    """Images on disk with multi-label targets.

    samples: [(path, label indices)], classes: names in target order, transform: PIL RGB ->
    [3, H, W] float tensor (``None``: plain ``to_tensor``). ``source`` names the annotation file
    or folder the samples came from (used in messages). Raises a DataError if no sample remains.
    """

    def __init__(
        self,
        samples: Iterable[Sample],
        classes: Sequence[str],
        transform: Callable | None = None,
        *,
        on_bad_image: str = "error",
        on_missing: str = "error",
        name: str = "dataset",
        split: str = "",
        source: str = "",
    ):
        self.name, self.split, self.source = name, split, str(source)
        self.on_bad_image = check_policy(on_bad_image, "on_bad_image", name)
        check_policy(on_missing, "on_missing", name, MISSING_POLICIES)
        self.classes = list(classes)
        self.transform = transform
        self.skipped = 0
        self.unreadable_files: list[str] = []  # dropped by verify_images under "skip"
        samples = [(str(path), tuple(sorted(set(labels)))) for path, labels in samples]
        self.files_checked = on_missing != "unchecked"
        self.missing_files = [path for path, _ in samples if self.files_checked and not os.path.isfile(path)]
        self.missing = len(self.missing_files)
        if self.missing:
            examples = ", ".join(self.missing_files[:3])
            what = (
                f"{name} {split}: {self.missing} of {len(samples)} images listed in "
                f"{self.source} are missing on disk (e.g. {examples})"
            )
            if on_missing == "error":
                raise DataError(f"{what}; fix the dataset folder or set on_missing: skip")
            logger.warning("%s; skipping them", what)
            absent = set(self.missing_files)
            samples = [s for s in samples if s[0] not in absent]
        if not samples:
            raise DataError(
                f"{name} {split}: the split is empty (no usable image in "
                f"{self.source}); check the dataset root and its list files"
            )
        self.samples: list[Sample] = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        image = self.load_image(i)
        if image is None:
            return None
        tensor = self.transform(image) if self.transform is not None else to_tensor(image)
        return tensor, self.target(i), i

    def target(self, i: int) -> torch.Tensor:
        """The 0/1 target of sample i, float32 [q]."""
        target = torch.zeros(len(self.classes), dtype=torch.float32)
        labels = self.samples[i][1]
        if labels:
            target[list(labels)] = 1.0
        return target

    def load_image(self, i: int) -> Image.Image | None:
        """The RGB image of sample i, or None (after a warning) under on_bad_image="skip"."""
        path = self.samples[i][0]
        try:
            return load_rgb(path)
        except Exception as err:  # any decode failure: PIL raises OSError, ValueError, ...
            reason = f"{type(err).__name__}: {err}"
        if self.on_bad_image == "error":
            raise DataError(
                f"{self.name} {self.split}: cannot read image {path} ({reason}); "
                "replace or remove the file, or set on_bad_image: skip "
                "(data.verify_images: true finds such files before training)"
            )
        self.skipped += 1
        logger.warning("%s %s: skipping unreadable image %s (%s)", self.name, self.split, path, reason)
        return None

    def verify_images(self, workers: int = 0) -> list[str]:
        """Decode every image once (``workers`` threads; 0: one per CPU) and apply
        ``on_bad_image``: "error" raises a DataError naming the first unreadable file in sample
        order; "skip" drops the unreadable samples, logs them and lists them in
        ``unreadable_files``. Returns the files dropped by this call."""

        def problem(path: str) -> str | None:
            try:
                load_rgb(path)
            except Exception as err:  # any decode failure, as in load_image
                return f"{type(err).__name__}: {err}"
            return None

        paths = [path for path, _ in self.samples]
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            problems = list(pool.map(problem, paths))
        bad = [(path, reason) for path, reason in zip(paths, problems) if reason is not None]
        if not bad:
            return []
        if self.on_bad_image == "error":
            path, reason = bad[0]
            raise DataError(
                f"{self.name} {self.split}: cannot read image {path} ({reason}); "
                f"{len(bad)} of {len(paths)} images are unreadable; replace or remove "
                "them, or set on_bad_image: skip"
            )
        dropped = {path for path, _ in bad}
        for path, reason in bad:
            logger.warning("%s %s: dropping unreadable image %s (%s)", self.name, self.split, path, reason)
        logger.warning("%s %s: %d of %d images unreadable and dropped", self.name, self.split, len(bad), len(paths))
        self.samples = [sample for sample in self.samples if sample[0] not in dropped]
        self.unreadable_files += [path for path, _ in bad]
        if not self.samples:
            raise DataError(f"{self.name} {self.split}: no readable image left in {self.source}")
        return [path for path, _ in bad]

    def labels_matrix(self) -> np.ndarray:
        """The targets of every sample as uint8 [N, q]."""
        matrix = np.zeros((len(self.samples), len(self.classes)), dtype=np.uint8)
        for row, (_, labels) in enumerate(self.samples):
            matrix[row, list(labels)] = 1
        return matrix

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, split={self.split!r}, "
            f"images={len(self)}, classes={len(self.classes)}, missing={self.missing})"
        )
