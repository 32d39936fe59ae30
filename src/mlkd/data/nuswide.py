"""NUS-WIDE (``nuswide``) in its official layout.

- root/Concepts81.txt: the concept names, one per line (the class order of the targets),
- root/ImageList/{Train,Test}Imagelist.txt: one image per line, ``actor\\0001_2124494179.jpg``
  (backslash or slash separated; the last two parts, concept folder and file, are used),
- root/TrainTestLabels/Labels_<concept>_{Train,Test}.txt: one 0/1 per line, aligned with the
  image list,
- root/Flickr/<concept folder>/<file>.jpg: the images.

Many public copies lack some images: by default they are skipped at construction, counted in
``missing`` and logged (``on_missing: error`` makes them an error).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from mlkd.data.images import MultiLabelImageDataset, dataset_builder, read_lines
from mlkd.data.registry import DATASETS
from mlkd.errors import ConfigError, DataError

_PARTS = {"train": "Train", "test": "Test"}
_SEPARATORS = re.compile(r"[\\/]+")


def read_label_column(path: Path, expected: int) -> np.ndarray:
    """One concept's 0/1 labels as bool [expected]; a DataError naming the file and line."""
    lines = read_lines(path, "NUS-WIDE label file")
    values = np.array(lines)
    bad = np.flatnonzero((values != "0") & (values != "1"))
    if len(bad):
        raise DataError(f"nuswide: {path} line {bad[0] + 1}: {lines[bad[0]]!r} is not 0 or 1")
    if len(lines) != expected:
        raise DataError(f"nuswide: {path} has {len(lines)} labels but the image list has "
                        f"{expected} images; the two files must be aligned line by line")
    return values == "1"


def image_relpath(line: str, list_file: Path, number: int) -> tuple[str, str]:
    """(concept folder, file name) of an image-list line (either separator)."""
    parts = [p for p in _SEPARATORS.split(line.strip()) if p]
    if len(parts) < 2:
        raise DataError(f"nuswide: {list_file} line {number}: {line!r} is not "
                        "'<concept folder>\\<file name>'")
    return parts[-2], parts[-1]


@DATASETS.register("nuswide")
@dataset_builder("nuswide")
def build_nuswide(split: str, transform: Callable | None = None, *, root: str,
                  image_dir: str | None = None, keep_empty: bool = True,
                  on_missing: str = "skip", on_bad_image: str = "error"
                  ) -> MultiLabelImageDataset:
    """NUS-WIDE with the 81 concepts, split "train" (161,789 listed) or "test" (107,859).

    Options:
      root: the folder holding Concepts81.txt, ImageList/ and TrainTestLabels/.
      image_dir: the folder holding the <concept>/<file>.jpg images (default root/Flickr).
      keep_empty: keep images with none of the 81 concepts (default True, as the official code).
      on_missing: "skip" (default; counted in ``missing``, logged) | "error" for listed images
        absent on disk.
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.

    The concept list, the image list and the 81 label files are read at construction; a missing
    file, a label that is not 0/1 or a label file not aligned with the image list is a DataError
    naming the file.
    """
    if split not in _PARTS:
        raise ConfigError(f"nuswide: split must be 'train' or 'test', got {split!r}")
    root_dir = Path(root).expanduser()
    images_root = Path(image_dir).expanduser() if image_dir else root_dir / "Flickr"
    concepts_file = root_dir / "Concepts81.txt"
    classes = read_lines(concepts_file, "NUS-WIDE concept list")
    if len(set(classes)) != len(classes):
        raise DataError(f"nuswide: {concepts_file} lists a concept twice")
    part = _PARTS[split]
    list_file = root_dir / "ImageList" / f"{part}Imagelist.txt"
    lines = read_lines(list_file, "NUS-WIDE image list")
    paths = [str(images_root.joinpath(*image_relpath(line, list_file, n + 1)))
             for n, line in enumerate(lines)]
    labels = np.zeros((len(paths), len(classes)), dtype=bool)
    for k, concept in enumerate(classes):
        label_file = root_dir / "TrainTestLabels" / f"Labels_{concept}_{part}.txt"
        labels[:, k] = read_label_column(label_file, len(paths))
    samples = [(path, tuple(np.flatnonzero(row).tolist())) for path, row in zip(paths, labels)]
    if not keep_empty:
        samples = [s for s in samples if s[1]]
    return MultiLabelImageDataset(samples, classes, transform, on_bad_image=on_bad_image,
                                  on_missing=on_missing, name="nuswide", split=split,
                                  source=list_file)
