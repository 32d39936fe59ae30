"""Generic list-file datasets (``list``): images and labels from list files
(``mlkd.data.listformats`` describes the formats: csv, csv_list, json, txt, onehot).

Either one file per split (``train_file``, ``test_file``) or one file holding both with a split
column (``file``, ``split_column``, ``split_values``). Relative paths are resolved against
``image_root`` if given, else the list file's folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from mlkd.data.images import MultiLabelImageDataset, dataset_builder, read_lines
from mlkd.data.listformats import LABEL_SEPARATOR, Columns, Entry, ListTable, read_list
from mlkd.errors import ConfigError, DataError, quote
from mlkd.registries import DATASETS

logger = logging.getLogger(__name__)

LABELS_AS = ("names", "indices")
DEFAULT_SPLIT_VALUES = {"train": "train", "test": "test"}


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
        raise DataError(
            f"list: class list {path}: {quote(joined[0])} contains the label separator "
            f"{LABEL_SEPARATOR!r} (CSV labels could never name it); rename the class"
        )
    return classes


def split_entries(table: ListTable, split: str, values: Mapping[str, Any]) -> list[Entry]:
    """The entries of ``table`` whose split cell is ``values[split]`` (a value or a list)."""
    wanted = values.get(split)
    wanted = {str(v) for v in wanted} if isinstance(wanted, (list, tuple)) else {str(wanted)}
    entries = [e for e in table.entries if e.split in wanted]
    if not entries:
        found = sorted({e.split for e in table.entries})
        raise DataError(
            f"list: no row of {table.path} has the split value "
            f"{' or '.join(sorted(wanted))} for the {split} split (values found: "
            f"{quote(found)}); set split_values: {{train: <value>, test: <value>}}"
        )
    return entries


def choose_classes(tables: list[ListTable], classes_file: str | None, labels_as: str, list_file: Path) -> list[str]:
    """The target order: classes_file, else a onehot header, else the sorted union of names."""
    header = tables[0].header_classes
    if classes_file:
        classes = read_classes(Path(classes_file).expanduser())
        if header is not None and set(header) != set(classes):
            raise DataError(
                f"list: the class columns of {list_file} ({quote(header)}) are not the "
                f"classes of {classes_file}; make them the same names"
            )
        return classes
    if header is not None:
        return header
    if labels_as == "indices":
        raise ConfigError("list: labels_as: indices needs classes_file (the names, one per line, in index order)")
    classes = sorted({n for table in tables for e in table.entries for n in e.labels})
    if not classes:
        raise DataError(f"list: {list_file} names no class at all; give classes_file")
    return classes


def label_indices(
    entry: Entry, classes: list[str], labels_as: str, list_file: Path, classes_file: str | None
) -> tuple[int, ...]:
    """The class indices of one entry; a DataError naming the file, the entry and the label."""
    if labels_as == "indices":
        out = []
        for token in entry.labels:
            if not token.isdecimal() or not int(token) < len(classes):
                raise DataError(
                    f"list: {list_file} {entry.where}: label {quote(token)} is not an "
                    f"index in [0, {len(classes)}) into {classes_file}"
                )
            out.append(int(token))
        return tuple(out)
    index = {name: k for k, name in enumerate(classes)}
    unknown = [n for n in entry.labels if n not in index]
    if unknown:
        raise DataError(
            f"list: {list_file} {entry.where}: unknown class {unknown[0]!r} (not in "
            f"{classes_file or 'the class columns'}); fix the label or add the class "
            "to the class list"
        )
    return tuple(index[n] for n in entry.labels)


@DATASETS.register("list")
@dataset_builder("list")
def build_list(
    split: str,
    transform: Callable | None = None,
    *,
    train_file: str | None = None,
    test_file: str | None = None,
    file: str | None = None,
    format: str = "auto",
    classes_file: str | None = None,
    image_root: str | None = None,
    labels_as: str = "names",
    path_column: str | None = None,
    labels_column: str | None = None,
    split_column: str | None = None,
    split_values: Mapping[str, Any] | None = None,
    keep_empty: bool = True,
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> MultiLabelImageDataset:
    """Images and labels from list files (formats in ``mlkd.data.listformats``).

    Options:
      train_file, test_file: the list file of each split; the one of the split being built is
        required (unless ``file`` is given).
      file: instead, one list file holding both splits; each row's split is read from
        ``split_column`` (default: a column named split / split_name / subset) and matched with
        ``split_values`` (default ``{train: train, test: test}``; ASL's nus_wid_data.csv:
        ``{train: train, test: val}``; a value may be a list).
      format: auto (default: .csv -> csv, .json -> json) | csv | csv_list | json | txt | onehot.
      classes_file: the class names, one per line, in target order. Without it the classes are a
        onehot file's class columns (in their order), else the sorted union of the names used in
        both splits; prefer a classes_file, since a class absent from the lists would silently
        change the order.
      labels_as: names (default) | indices (0-based indices into classes_file).
      path_column, labels_column: the CSV columns to read (default: the usual names).
      image_root: the folder relative paths start from (default: each list file's folder).
      keep_empty: keep images without labels (default True).
      on_missing: "error" (default) | "skip" for listed images absent on disk (checked at
        construction) | "unchecked" (labels only: the files are not looked at).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.

    A label not in the classes is a DataError naming the file, the line (CSV, txt) or entry
    (JSON) and the label.
    """
    files = {"train": train_file, "test": test_file}
    if split not in files:
        raise ConfigError(f"list: split must be 'train' or 'test', got {split!r}")
    if labels_as not in LABELS_AS:
        raise ConfigError(f"list: option labels_as must be one of {', '.join(LABELS_AS)}, got {labels_as!r}")
    columns = Columns(path_column, labels_column, split_column, want_split=bool(file))
    if file:
        if train_file or test_file:
            raise ConfigError("list: give either file (both splits, a split column) or train_file/test_file, not both")
        list_file = Path(file).expanduser()
        table = read_list(list_file, format, columns)
        entries = split_entries(table, split, split_values or DEFAULT_SPLIT_VALUES)
        tables = [table]
    else:
        if split_column or split_values:
            raise ConfigError(
                "list: split_column / split_values choose rows of one file; give it as file (not train_file/test_file)"
            )
        if not files[split]:
            raise ConfigError(
                f"list: option {split}_file is required to build the {split} split (or give file with a split column)"
            )
        list_file = Path(files[split]).expanduser()
        table = read_list(list_file, format, columns)
        entries, tables = table.entries, [table]
        other = files["test" if split == "train" else "train"]
        if other and Path(other).expanduser().resolve() == list_file.resolve():
            logger.warning(
                "list: train_file and test_file are the same file %s: the test split is the training set", list_file
            )
        elif other and not classes_file and table.header_classes is None:
            tables.append(read_list(Path(other).expanduser(), format, columns))
    classes = choose_classes(tables, classes_file, labels_as, list_file)
    base = Path(image_root).expanduser() if image_root else list_file.parent
    samples = []
    for entry in entries:
        labels = label_indices(entry, classes, labels_as, list_file, classes_file)
        if labels or keep_empty:
            samples.append((str(base / entry.path), labels))
    return MultiLabelImageDataset(
        samples,
        classes,
        transform,
        on_bad_image=on_bad_image,
        on_missing=on_missing,
        name="list",
        split=split,
        source=list_file,
    )
