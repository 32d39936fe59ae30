"""NUS-WIDE (``nuswide``) as NUS distributes it, or as ASL / ML-Decoder users have it.

Official files (NUS-WIDE.zip and ImageList.zip extracted in root; the flat layout of earlier
copies, everything directly in root, is found too):

- ConceptsList/Concepts81.txt: the concept names, one per line (the class order of the targets),
- ImageList/{Train,Test}Imagelist.txt: one image per line, ``actor\\0001_2124494179.jpg``
  (backslash or slash separated, CRLF or LF; the last two parts, concept folder and file, are
  used, so ``C:\\ImageData\\Flickr\\actor\\...`` lines work too),
- Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt: one 0/1 per line, aligned
  with the image list.

ASL / ML-Decoder (``nus_wid_data.csv``: ``filepath,label,split_name``, labels a Python list of
names, splits ``train`` / ``val``): read through the list formats (``csv_list``); test = ``val``.
The class order is Concepts81.txt's when it is found, else the sorted names (the same 81 names
in the same order: Concepts81.txt is alphabetical).

Images: root/Flickr/<concept folder>/<file>.jpg (as NUS shipped them), or a flat folder
root/images/<file>.jpg or root/images/<Flickr id>.jpg (the ASL copy); ``image_dir`` names
another folder. The layout is chosen by where the first listed images are found.

Many public copies lack some images: by default they are skipped at construction, counted in
``missing`` and logged (``on_missing: error`` makes them an error).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mlkd.data.images import MultiLabelImageDataset, dataset_builder, read_lines
from mlkd.data.listfile import split_entries
from mlkd.data.listformats import Columns, read_list
from mlkd.errors import ConfigError, DataError
from mlkd.registries import DATASETS

logger = logging.getLogger(__name__)

_PARTS = {"train": "Train", "test": "Test"}
_CSV_SPLITS = {"train": "train", "test": "val"}
_SEPARATORS = re.compile(r"[\\/]+")
ASL_CSV = "nus_wid_data.csv"
_PROBE = 20  # listed images looked for when choosing the image layout


def read_label_column(path: Path, expected: int) -> np.ndarray:
    """One concept's 0/1 labels as bool [expected]; a DataError naming the file and line."""
    lines = read_lines(path, "NUS-WIDE label file")
    values = np.array(lines)
    bad = np.flatnonzero((values != "0") & (values != "1"))
    if len(bad):
        raise DataError(f"nuswide: {path} line {bad[0] + 1}: {lines[bad[0]]!r} is not 0 or 1")
    if len(lines) != expected:
        raise DataError(
            f"nuswide: {path} has {len(lines)} labels but the image list has "
            f"{expected} images; the two files must be aligned line by line"
        )
    return values == "1"


def image_relpath(line: str, list_file: Path, number: int) -> tuple[str, str]:
    """(concept folder, file name) of an image-list line (either separator)."""
    parts = [p for p in _SEPARATORS.split(line.strip()) if p]
    if len(parts) < 2:
        raise DataError(f"nuswide: {list_file} line {number}: {line!r} is not '<concept folder>\\<file name>'")
    return parts[-2], parts[-1]


def first_file(root: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``root / candidate`` that is a file, or None."""
    return next((root / c for c in candidates if (root / c).is_file()), None)


def flickr_id(name: str) -> str:
    """``0001_2124494179.jpg`` -> ``2124494179.jpg`` (the photo id; names without "_" unchanged)."""
    return name.split("_", 1)[1] if "_" in name else name


def choose_layout(layouts: dict[str, list[str]], probe: bool) -> tuple[str, list[str]]:
    """(name, paths) of the image layout under which most of the first listed images exist
    (the first layout when none is found, or when ``probe`` is False)."""
    names = list(layouts)
    if not probe:
        return names[0], layouts[names[0]]
    found = {name: sum(os.path.isfile(p) for p in paths[:_PROBE]) for name, paths in layouts.items()}
    best = max(names, key=lambda name: (found[name], -names.index(name)))
    return best, layouts[best]


def official_samples(root: Path, concepts_file: Path, split: str, images: Path | None, probe: bool):
    """(classes, samples, source) from the official files."""
    classes = read_lines(concepts_file, "NUS-WIDE concept list")
    if len(set(classes)) != len(classes):
        raise DataError(f"nuswide: {concepts_file} lists a concept twice")
    part = _PARTS[split]
    list_file = root / "ImageList" / f"{part}Imagelist.txt"
    rel = [image_relpath(line, list_file, n + 1) for n, line in enumerate(read_lines(list_file, "NUS-WIDE image list"))]
    label_dir = first_file(
        root, [f"{d}/Labels_{classes[0]}_{part}.txt" for d in ("Groundtruth/TrainTestLabels", "TrainTestLabels")]
    )
    label_dir = label_dir.parent if label_dir else root / "Groundtruth" / "TrainTestLabels"
    labels = np.zeros((len(rel), len(classes)), dtype=bool)
    for k, concept in enumerate(classes):
        labels[:, k] = read_label_column(label_dir / f"Labels_{concept}_{part}.txt", len(rel))
    folders, flat = images or root / "Flickr", images or root / "images"
    layout, paths = choose_layout(
        {
            "concept folders": [str(folders / folder / name) for folder, name in rel],
            "flat": [str(flat / name) for _, name in rel],
            "flat by Flickr id": [str(flat / flickr_id(name)) for _, name in rel],
        },
        probe,
    )
    logger.info("nuswide %s: images in the %s layout", split, layout)
    samples = [(path, tuple(np.flatnonzero(row).tolist())) for path, row in zip(paths, labels)]
    return classes, samples, list_file


def csv_samples(root: Path, csv_file: Path, concepts_file: Path | None, split: str, images: Path | None, probe: bool):
    """(classes, samples, source) from an ASL / ML-Decoder ``nus_wid_data.csv``."""
    table = read_list(csv_file, "csv_list", Columns(want_split=True))
    entries = split_entries(table, split, _CSV_SPLITS)
    if concepts_file is not None:
        classes = read_lines(concepts_file, "NUS-WIDE concept list")
    else:
        classes = sorted({n for e in table.entries for n in e.labels})
    index = {c: k for k, c in enumerate(classes)}
    for entry in entries:
        unknown = [n for n in entry.labels if n not in index]
        if unknown:
            where = concepts_file or "the csv's own labels"
            raise DataError(f"nuswide: {csv_file} {entry.where}: unknown concept {unknown[0]!r} (not in {where})")
    names = [Path(e.path.replace("\\", "/")).name for e in entries]
    flat = images or root / "images"
    layouts = {"as listed": [str(root / e.path) for e in entries]} if images is None else {}
    layouts["flat"] = [str(flat / n) for n in names]
    layouts["flat by Flickr id"] = [str(flat / flickr_id(n)) for n in names]
    layout, paths = choose_layout(layouts, probe)
    logger.info("nuswide %s: images in the %s layout", split, layout)
    samples = [(p, tuple(index[n] for n in e.labels)) for p, e in zip(paths, entries)]
    return classes, samples, csv_file


@DATASETS.register("nuswide")
@dataset_builder("nuswide")
def build_nuswide(
    split: str,
    transform: Callable | None = None,
    *,
    root: str,
    image_dir: str | None = None,
    csv: str | None = None,
    keep_empty: bool = True,
    on_missing: str = "skip",
    on_bad_image: str = "error",
) -> MultiLabelImageDataset:
    """NUS-WIDE with the 81 concepts, split "train" (161,789 listed) or "test" (107,859), or
    those of an ASL ``nus_wid_data.csv`` (its ``train`` / ``val`` rows).

    Options:
      root: the folder holding ConceptsList/ (or Concepts81.txt), Groundtruth/TrainTestLabels/
        (or TrainTestLabels/) and ImageList/; or an ASL copy: nus_wid_data.csv and images/.
      csv: an ASL / ML-Decoder nus_wid_data.csv to read instead of the official label files
        (default: root/nus_wid_data.csv when root has no official concept list).
      image_dir: the folder holding the images, in <concept>/<file>.jpg folders or flat
        (default: root/Flickr or root/images, whichever holds the listed images).
      keep_empty: keep images with none of the 81 concepts (default True, as the official code).
      on_missing: "skip" (default; counted in ``missing``, logged) | "error" for listed images
        absent on disk | "unchecked" (labels only: the files are not looked at).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.

    The concept list, the image list and the 81 label files are read at construction; a missing
    file, a label that is not 0/1 or a label file not aligned with the image list is a DataError
    naming the file.
    """
    if split not in _PARTS:
        raise ConfigError(f"nuswide: split must be 'train' or 'test', got {split!r}")
    root_dir = Path(root).expanduser()
    probe = on_missing != "unchecked"
    images = Path(image_dir).expanduser() if image_dir else None
    concepts_file = first_file(root_dir, ["ConceptsList/Concepts81.txt", "Concepts81.txt"])
    csv_file = Path(csv).expanduser() if csv else None
    if csv_file is None and concepts_file is None and (root_dir / ASL_CSV).is_file():
        csv_file = root_dir / ASL_CSV
    if csv_file is not None:
        classes, samples, source = csv_samples(root_dir, csv_file, concepts_file, split, images, probe)
    elif concepts_file is None:
        raise DataError(
            f"nuswide: no concept list under {root_dir} (looked for "
            f"{root_dir / 'ConceptsList' / 'Concepts81.txt'} and "
            f"{root_dir / 'Concepts81.txt'}) and no {ASL_CSV}; set root to the folder "
            "holding ConceptsList/, Groundtruth/ and ImageList/ (or give csv: "
            f"<path to {ASL_CSV}>)"
        )
    else:
        classes, samples, source = official_samples(root_dir, concepts_file, split, images, probe)
    if not keep_empty:
        samples = [s for s in samples if s[1]]
    return MultiLabelImageDataset(
        samples,
        classes,
        transform,
        on_bad_image=on_bad_image,
        on_missing=on_missing,
        name="nuswide",
        split=split,
        source=source,
    )
