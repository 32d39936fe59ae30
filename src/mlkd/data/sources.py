"""Single-label image sources for the mosaic dataset: IDX (Fashion-MNIST / MNIST) and digits.

``load_source(name, split, source_dir, cell_size)`` returns a :class:`Source` whose images are
uint8 grayscale ``[M, cell_size, cell_size]`` and whose labels are int64 ``[M]`` class indices.

- ``fashion-mnist`` / ``mnist``: the four standard IDX files (``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``;
  uncompressed copies without ``.gz`` are accepted too) in ``source_dir``; "train" is the
  60,000-image train file, "test" the 10,000-image t10k file.
- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images, values 0..16, scaled to
  0..255), split by a fixed stratified 70/30 split (``random_state=0``) into 1,257 train and
  540 test images; shipped with mlkd as ``assets/digits.npz`` (``derive_digits_splits``), so it
  needs no scikit-learn and no download.

Resizing (only when ``cell_size`` differs from the native size) is bilinear with half-pixel
centres and edge clamping, the same as ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` (no antialiasing), rounded to uint8.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlkd.errors import ConfigError, DataError
from mlkd.optional import optional_import

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]
SOURCES = {"fashion-mnist": FASHION_MNIST_CLASSES, "mnist": DIGIT_CLASSES, "digits": DIGIT_CLASSES}
NATIVE_SIZE = {"fashion-mnist": 28, "mnist": 28, "digits": 8}
DEFAULT_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0
#: scikit-learn's digits, split and scaled (``derive_digits_splits``), shipped with mlkd.
DIGITS_ASSET = Path(__file__).with_name("assets") / "digits.npz"

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Source:
    """One split of a single-label source: images uint8 [M, S, S], labels int64 [M]."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``) into an array.

    Header: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, then each
    dimension as a big-endian uint32 (so the magic of an image file is 2051, of a label file 2049).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read IDX file {path}: {err}; re-download or re-install it") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path} is not an IDX file (magic {magic}; expected 2051 for images, 2049 for labels)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header")
    dims = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw) - header} data bytes, its header "
            f"{dims} says {expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def idx_paths(source_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """The (images, labels) IDX files of one split of an MNIST-format folder; a DataError names
    the folder or the missing files and the fix."""
    folder = Path(source_dir).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"source folder {folder} does not exist; run `apt-get install "
            "dataset-fashion-mnist`, point `source_dir` at a folder holding the four "
            "Fashion-MNIST/MNIST IDX .gz files, or use `source: digits`"
        )
    stems = _IDX_FILES[split]
    paths = [_find(folder, stem) for stem in stems]
    missing = [stem + ".gz" for stem, p in zip(stems, paths) if p is None]
    if missing:
        raise DataError(
            f"source folder {folder} lacks {', '.join(missing)}; it must hold the "
            "four standard Fashion-MNIST/MNIST IDX .gz files (or use `source: digits`)"
        )
    return paths[0], paths[1]


def load_idx_split(source_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of an MNIST-format folder: images uint8 [M, 28, 28], labels int64 [M]."""
    paths = idx_paths(source_dir, split)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{paths[0]} must hold uint8 images [N, H, W], found {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{paths[1]} must hold {len(images)} labels (one per image in {paths[0].name}), found shape {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{paths[1]} has labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    return images, labels


def fashion_mnist_available(source_dir: str | os.PathLike | None = None) -> bool:
    """True when ``source_dir`` (default ``DEFAULT_SOURCE_DIR``) holds the four IDX files."""
    folder = Path(source_dir or DEFAULT_SOURCE_DIR).expanduser()
    return all(_find(folder, stem) is not None for stems in _IDX_FILES.values() for stem in stems)


_ANNOUNCED: set[tuple[str, str]] = set()


def default_source(source_dir: str | os.PathLike | None = None) -> str:
    """The mosaic's source when a config names none (``source: auto``): ``fashion-mnist`` when
    ``source_dir`` is given or ``DEFAULT_SOURCE_DIR`` holds its four IDX files, else the packaged
    ``digits``, which need nothing beyond the core install. Which one is logged (once a process),
    with how to get Fashion-MNIST when it is the digits."""
    if source_dir is not None:
        return "fashion-mnist"
    folder = str(Path(DEFAULT_SOURCE_DIR).expanduser())
    source = "fashion-mnist" if fashion_mnist_available(folder) else "digits"
    if (source, folder) not in _ANNOUNCED:
        _ANNOUNCED.add((source, folder))
        if source == "digits":
            log.warning(
                "mosaic source: Fashion-MNIST is not installed (no IDX files in %s), so the mosaics use the "
                "digits packaged with mlkd (scikit-learn's 8x8 digits); for Fashion-MNIST: apt-get install "
                "dataset-fashion-mnist (make fashion-mnist), or set data.options.source_dir to a folder with its "
                "four IDX .gz files (data.options.source: digits keeps the digits without this message)",
                folder,
            )
        else:
            log.info("mosaic source: fashion-mnist (%s)", folder)
    return source


def derive_digits_splits() -> dict[str, np.ndarray]:
    """The packaged digits (``DIGITS_ASSET``) from scikit-learn's ``load_digits``: 0..16 scaled to
    uint8 0..255, split by a stratified 70/30 ``train_test_split`` (``random_state=0``).
    {"train_images" uint8 [1257, 8, 8], "train_labels" uint8 [1257], "test_images" uint8 [540, 8, 8],
    "test_labels" uint8 [540]}. Run by ``scripts/derive_digits.py``; needs scikit-learn."""
    purpose = "deriving the packaged digits"
    datasets = optional_import("sklearn.datasets", extra="dev", purpose=purpose)
    model_selection = optional_import("sklearn.model_selection", extra="dev", purpose=purpose)

    digits = datasets.load_digits()
    index = np.arange(len(digits.target))
    train_idx, test_idx = model_selection.train_test_split(
        index, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=digits.target
    )
    arrays = {}
    for split, chosen in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
        arrays[f"{split}_images"] = np.rint(digits.images[chosen] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = digits.target[chosen].astype(np.uint8)
    return arrays


def load_digits_split(split: str, path: str | os.PathLike = DIGITS_ASSET) -> tuple[np.ndarray, np.ndarray]:
    """One split of the packaged digits (no scikit-learn needed): images uint8 [M, 8, 8] in
    0..255, labels int64 [M]."""
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data[f"{split}_images"], data[f"{split}_labels"]
    except (OSError, KeyError, ValueError) as err:
        raise DataError(
            f"cannot read the packaged digits {path} ({err}); reinstall mlkd, or rebuild the file with "
            "scripts/derive_digits.py"
        ) from None
    return images, labels.astype(np.int64)


def _interp_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Bilinear weights [size_out, size_in] (half-pixel centres, clamped at the edges)."""
    src = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    src = np.clip(src, 0.0, None)
    lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = src - lo
    weights = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize uint8 images [M, h, w] to uint8 [M, size, size] (vectorised)."""
    m, h, w = images.shape
    if (h, w) == (size, size):
        return images
    wy, wx = _interp_matrix(h, size), _interp_matrix(w, size)
    out = np.einsum("oh,mhw,pw->mop", wy, images.astype(np.float32), wx.astype(np.float32), optimize=True)
    return np.rint(out).clip(0, 255).astype(np.uint8)


def load_source(
    name: str, split: str, source_dir: str | os.PathLike | None = None, cell_size: int | None = None
) -> Source:
    """Load ``split`` ("train"/"test") of source ``name``, resized to ``cell_size`` (default native)."""
    if name not in SOURCES:
        raise ConfigError(f"unknown mosaic source {name!r}; known: {', '.join(sorted(SOURCES))}")
    if split not in _IDX_FILES:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if name == "digits":
        images, labels = load_digits_split(split)
    else:
        images, labels = load_idx_split(source_dir or DEFAULT_SOURCE_DIR, split)
    images = resize_stack(images, cell_size or NATIVE_SIZE[name])
    return Source(name, split, np.ascontiguousarray(images), labels, list(SOURCES[name]))
