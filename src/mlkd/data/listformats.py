"""The list-file formats of the ``list`` dataset (option ``format``), read into one table.

- ``csv``: a header row naming a path column and a labels column, then one image per row;
  labels are class names separated by ``|`` (``dog|person``; empty = no label).
- ``csv_list``: the same, the labels cell holding a Python or JSON list
  (``['dog', 'person']`` / ``["dog"]`` / ``[]``), as in ASL's and ML-Decoder's
  ``nus_wid_data.csv`` (``filepath,label,split_name``).
- ``json``: ``[{"path": "img/1.jpg", "labels": ["dog", "person"]}, ...]``.
- ``txt``: one image per line, whitespace separated: ``path label1 label2 ...`` (paths without
  spaces; blank lines and lines starting with ``#`` are skipped).
- ``onehot``: a CSV whose header names the path column and one column per class, each cell 0
  or 1; the class order is the column order.
- ``auto`` (default): ``csv`` for ``.csv``, ``json`` for ``.json``; other suffixes need a format.

Path / labels / split columns are found by name (``path_column`` etc., or the first of the usual
names: path, filepath, filename, file_name, image, ...; labels, label, tags; split, split_name).
"""

from __future__ import annotations

import ast
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from mlkd.data.images import read_text
from mlkd.errors import ConfigError, DataError, quote

FORMATS = ("auto", "csv", "csv_list", "json", "txt", "onehot")
LABEL_SEPARATOR = "|"
PATH_COLUMNS = ("path", "filepath", "file_path", "filename", "file_name", "image", "image_path", "img")
LABEL_COLUMNS = ("labels", "label", "tags")
SPLIT_COLUMNS = ("split", "split_name", "subset")
_ONE_HOT = {"0": False, "1": True, "0.0": False, "1.0": True}


@dataclass
class Entry:
    """One image of a list file: its path as written, its labels (class names, or index strings
    for ``labels_as: indices``), where it is ("line N" / "entry N") and its split cell."""

    path: str
    labels: list[str]
    where: str
    split: Optional[str] = None


@dataclass
class ListTable:
    """A list file read: its entries, and the classes its header declares (onehot) or None."""

    path: Path
    entries: list[Entry] = field(default_factory=list)
    header_classes: Optional[list[str]] = None


@dataclass
class Columns:
    """Column names asked for (None: the usual names); ``split`` is read only when wanted."""

    path: Optional[str] = None
    labels: Optional[str] = None
    split: Optional[str] = None
    want_split: bool = False


def resolve_format(path: Path, fmt: str) -> str:
    """``fmt``, or for "auto" the format that ``path``'s suffix implies; a ConfigError if none."""
    if fmt not in FORMATS:
        raise ConfigError(f"list: option format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        return suffix[1:]
    raise ConfigError(f"list: {path} is neither .csv nor .json; set the option format ({', '.join(FORMATS[1:])})")


def read_list(path: Path, fmt: str = "auto", columns: Columns | None = None) -> ListTable:
    """The entries of a list file in format ``fmt``; a DataError naming the file and the entry."""
    fmt = resolve_format(path, fmt)
    text = read_text(path, "list: list file")
    columns = columns or Columns()
    if fmt == "json":
        return ListTable(path, _read_json(path, text))
    if fmt == "txt":
        return ListTable(path, _read_txt(path, text))
    rows, header = _csv_rows(path, text)
    if fmt == "onehot":
        return _read_onehot(path, rows, header, columns)
    return ListTable(path, _read_csv(path, rows, header, columns, fmt == "csv_list"))


def _csv_rows(path: Path, text: str) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """(numbered data rows, stripped header) of a CSV text."""
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as err:
        raise DataError(f"list: malformed CSV in {path} line {reader.line_num}: {err}") from err
    if not rows:
        raise DataError(f"list: {path} is empty; it needs a header row")
    header = [name.strip() for name in rows[0][1]]
    return [(n, r) for n, r in rows[1:] if any(cell.strip() for cell in r)], header


def find_column(
    path: Path, header: Sequence[str], asked: Optional[str], usual: Sequence[str], option: str, required: bool = True
) -> Optional[int]:
    """The position of column ``asked`` (or of the first usual name) in ``header``."""
    lowered = [name.lower() for name in header]
    for name in [asked] if asked else usual:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    if not required and not asked:
        return None
    wanted = repr(asked) if asked else f"one of {', '.join(usual)}"
    raise DataError(f"list: {path} has no column {wanted} (header: {quote(header)}); set the option {option}")


def _cell(row: list[str], k: int) -> str:
    return row[k].strip() if k < len(row) else ""


def _split_of(path, header, columns: Columns) -> Optional[int]:
    if not columns.want_split:
        return None
    return find_column(path, header, columns.split, SPLIT_COLUMNS, "split_column")


def _read_csv(path: Path, rows, header, columns: Columns, as_list: bool) -> list[Entry]:
    at_path = find_column(path, header, columns.path, PATH_COLUMNS, "path_column")
    at_labels = find_column(path, header, columns.labels, LABEL_COLUMNS, "labels_column")
    at_split = _split_of(path, header, columns)
    entries = []
    for number, row in rows:
        where = f"line {number}"
        image, cell = _cell(row, at_path), _cell(row, at_labels)
        if not image:
            raise DataError(f"list: {path} {where}: empty path")
        labels = parse_list_cell(cell, path, where) if as_list else _split_names(cell, path, where)
        split = _cell(row, at_split) if at_split is not None else None
        entries.append(Entry(image, labels, where, split))
    return entries


def _split_names(cell: str, path: Path, where: str) -> list[str]:
    if cell.startswith("[") and cell.endswith("]"):
        raise DataError(
            f"list: {path} {where}: labels {quote(cell)} look like a Python/JSON "
            "list; set format: csv_list (format csv separates names with '|')"
        )
    return [name.strip() for name in cell.split(LABEL_SEPARATOR) if name.strip()]


def parse_list_cell(cell: str, path: Path, where: str) -> list[str]:
    """A labels cell holding a Python / JSON list of names (or of ints) -> the names as str."""
    if not cell:
        return []
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in value
    ):
        raise DataError(
            f"list: {path} {where}: labels {quote(cell)} are not a list of names "
            "such as ['dog', 'person'] (format csv_list)"
        )
    return [str(v).strip() for v in value if str(v).strip()]


def _read_onehot(path: Path, rows, header, columns: Columns) -> ListTable:
    at_path = find_column(path, header, columns.path, PATH_COLUMNS, "path_column")
    at_split = _split_of(path, header, columns)
    if at_split is None:  # a split column is never a class, read or not
        at_split = find_column(path, header, columns.split, SPLIT_COLUMNS, "split_column", False)
    class_at = [k for k in range(len(header)) if k not in (at_path, at_split)]
    classes = [header[k] for k in class_at]
    if not classes or any(not c for c in classes):
        raise DataError(
            f"list: {path}: a onehot header names the path column and one column per class; found {quote(header)}"
        )
    table = ListTable(path, header_classes=classes)
    for number, row in rows:
        where = f"line {number}"
        if len(row) != len(header):
            raise DataError(f"list: {path} {where}: {len(row)} cells, the header has {len(header)}")
        labels = []
        for k, name in zip(class_at, classes):
            value = _ONE_HOT.get(row[k].strip())
            if value is None:
                raise DataError(f"list: {path} {where}: column {name!r} holds {quote(row[k])}; a onehot cell is 0 or 1")
            if value:
                labels.append(name)
        image = _cell(row, at_path)
        if not image:
            raise DataError(f"list: {path} {where}: empty path")
        table.entries.append(Entry(image, labels, where, _cell(row, at_split) if at_split is not None else None))
    if not columns.want_split:
        for entry in table.entries:
            entry.split = None
    return table


def _read_txt(path: Path, text: str) -> list[Entry]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if tokens and not tokens[0].startswith("#"):
            entries.append(Entry(tokens[0], tokens[1:], f"line {number}"))
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
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("path"), str)
            or not item["path"].strip()
            or not isinstance(item.get("labels"), list)
            or not all(isinstance(n, str) for n in item["labels"])
        ):
            raise DataError(f'list: {path} entry {k}: expected {{"path": str, "labels": [str]}}, got {item!r:.80}')
        entries.append(Entry(item["path"].strip(), [n.strip() for n in item["labels"]], f"entry {k}"))
    return entries
