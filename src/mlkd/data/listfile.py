"""Generic list-file datasets (``list``): one CSV or JSON file per split naming images and labels.

- CSV (``.csv``): a header row with the columns ``path`` and ``labels`` (other columns are
  ignored), then one image per row; ``labels`` holds class names separated by ``|``
  (``dog|person``; whitespace around names is stripped; empty = no label). Standard CSV quoting.
- JSON (``.json``): ``[{"path": "img/1.jpg", "labels": ["dog", "person"]}, ...]``.

Relative paths are resolved against ``image_root`` if given, else the list file's folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

from mlkd.data.images import MultiLabelImageDataset, dataset_builder, read_lines, read_text
from mlkd.data.registry import DATASETS
from mlkd.errors import ConfigError, DataError, quote

LABEL_SEPARATOR = "|"
Entry = tuple[str, list[str], str]  # (path as written, label names, "line N" / "entry N")


def read_list(path: Path) -> list[Entry]:
    """The entries of a CSV or JSON list file; a DataError naming the file and the entry."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise DataError(f"list: {path} must end in .csv or .json")
    text = read_text(path, "list: list file")
    return _read_csv(path, text) if suffix == ".csv" else _read_json(path, text)


def _read_csv(path: Path, text: str) -> list[Entry]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"path", "labels"} <= set(reader.fieldnames):
        raise DataError(f"list: {path} needs a header row with the columns path,labels; "
                        f"found {reader.fieldnames}")
    entries = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if not (row["path"] or "").strip():
                raise DataError(f"list: {path} {where}: empty path")
            names = [n.strip() for n in (row["labels"] or "").split(LABEL_SEPARATOR)]
            entries.append((row["path"].strip(), [n for n in names if n], where))
    except csv.Error as err:
        raise DataError(f"list: malformed CSV in {path} line {reader.line_num}: {err}") from err
    return entries


def _read_json(path: Path, text: str) -> list[Entry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"list: malformed JSON in {path}: {err}") from err
    if not isinstance(data, list):
        raise DataError(f'list: {path} must hold a JSON list of {{"path", "labels"}} objects')
    entries = []
    for k, item in enumerate(data):
        if (not isinstance(item, dict) or not isinstance(item.get("path"), str)
                or not item["path"].strip() or not isinstance(item.get("labels"), list)
                or not all(isinstance(n, str) for n in item["labels"])):
            raise DataError(f'list: {path} entry {k}: expected {{"path": str, "labels": [str]}}, '
                            f"got {item!r:.80}")
        entries.append((item["path"].strip(), [n.strip() for n in item["labels"]], f"entry {k}"))
    return entries


def read_classes(path: Path) -> list[str]:
    """Class names, one per line (blank lines ignored); a DataError if empty or repeated."""
    classes = read_lines(path, "class list")
    if not classes:
        raise DataError(f"list: class list {path} is empty")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise DataError(f"list: class list {path} repeats {', '.join(repeated)}")
    joined = [c for c in classes if LABEL_SEPARATOR in c]
    if joined:
        raise DataError(f"list: class list {path}: {quote(joined[0])} contains the label separator "
                        f"{LABEL_SEPARATOR!r} (CSV labels could never name it); rename the class")
    return classes


@DATASETS.register("list")
@dataset_builder("list")
def build_list(split: str, transform: Callable | None = None, *, train_file: str | None = None,
               test_file: str | None = None, classes_file: str | None = None,
               image_root: str | None = None, keep_empty: bool = True,
               on_missing: str = "error", on_bad_image: str = "error") -> MultiLabelImageDataset:
    """Images and label names from a CSV or JSON list file per split (format in the module doc).

    Options:
      train_file, test_file: the list file of each split (.csv or .json); the one of the split
        being built is required.
      classes_file: the class names, one per line, in target order. Without it the classes are
        the sorted union of the names used in train_file and test_file (both, whichever are
        given, so that the two splits share one order); prefer a classes_file, since a class
        absent from the lists would silently change the order.
      image_root: the folder relative paths start from (default: each list file's folder).
      keep_empty: keep images without labels (default True).
      on_missing: "error" (default) | "skip" for listed images absent on disk (checked at
        construction).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.

    A label name not in classes_file is a DataError naming the file, the line (CSV) or entry
    (JSON) and the name.
    """
    files = {"train": train_file, "test": test_file}
    if split not in files:
        raise ConfigError(f"list: split must be 'train' or 'test', got {split!r}")
    if not files[split]:
        raise ConfigError(f"list: option {split}_file is required to build the {split} split")
    list_file = Path(files[split]).expanduser()
    entries = read_list(list_file)
    if classes_file:
        classes = read_classes(Path(classes_file).expanduser())
    else:
        names = {n for _, labels, _ in entries for n in labels}
        other = files["test" if split == "train" else "train"]
        if other:
            names |= {n for _, labels, _ in read_list(Path(other).expanduser()) for n in labels}
        classes = sorted(names)
        if not classes:
            raise DataError(f"list: {list_file} names no class at all; give classes_file")
    index = {name: k for k, name in enumerate(classes)}
    base = Path(image_root).expanduser() if image_root else list_file.parent
    samples = []
    for path, labels, where in entries:
        unknown = [n for n in labels if n not in index]
        if unknown:
            raise DataError(f"list: {list_file} {where}: unknown class {unknown[0]!r} (not in "
                            f"{classes_file}); fix the label or add the class to the class list")
        if labels or keep_empty:
            samples.append((str(base / path), tuple(index[n] for n in labels)))
    return MultiLabelImageDataset(samples, classes, transform, on_bad_image=on_bad_image,
                                  on_missing=on_missing, name="list", split=split,
                                  source=list_file)
