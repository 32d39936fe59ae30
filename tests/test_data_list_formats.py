"""The ``list`` dataset's other layouts (``format``): CSVs with a Python/JSON labels list and a
split column, space-separated .txt lists, one-hot columns; every image's targets and the class
order of each format are checked, and each refusal names the file and the option to use."""

from pathlib import Path

import pytest

from mlkd.data import build_dataset
from mlkd.errors import ConfigError, DataError
from replicas import write_classes
from replicas_layouts import LAYOUT_ROWS, write_csv_list, write_onehot, write_txt_list

VALUES = {"train": "train", "test": "val"}


def rows_of(split: str):
    return [(p, names) for p, names, s in LAYOUT_ROWS if s == VALUES[split]]


def check(dataset, base: Path, rows) -> None:
    """Every image's path and target, in file order."""
    assert len(dataset) == len(rows)
    for i, ((path, labels), (rel, names)) in enumerate(zip(dataset.samples, rows)):
        assert Path(path) == base / rel
        assert dataset.target(i).tolist() == [float(c in names) for c in dataset.classes]
        assert {dataset.classes[k] for k in labels} == set(names)


@pytest.mark.parametrize("style", ["python", "json"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_csv_list_one_file_with_a_split_column(tmp_path, split, style):
    listing = write_csv_list(tmp_path / "nus_wid_data.csv", style=style)
    dataset = build_dataset("list", split, file=str(listing), format="csv_list", split_values=VALUES)
    assert dataset.classes == ["beach", "clouds", "person", "sky", "water"]  # sorted, both splits
    check(dataset, tmp_path, rows_of(split))


def test_csv_list_per_split_files_and_classes_file(tmp_path):
    classes = ["water", "sky", "person", "clouds", "beach"]
    options = {"format": "csv_list", "classes_file": str(write_classes(tmp_path / "c.txt", classes))}
    for split in ("train", "test"):
        rows = [r for r in LAYOUT_ROWS if r[2] == VALUES[split]]
        options[f"{split}_file"] = str(
            write_csv_list(tmp_path / f"{split}.csv", rows, header=("filename", "labels", "split"))
        )
    for split in ("train", "test"):
        dataset = build_dataset("list", split, **options)
        assert dataset.classes == classes  # the classes file's order
        check(dataset, tmp_path, rows_of(split))


def test_txt_names_and_indices(tmp_path):
    train = [(p, n) for p, n in rows_of("train")]
    listing = write_txt_list(tmp_path / "train.txt", train)
    dataset = build_dataset("list", "train", train_file=str(listing), format="txt")
    assert dataset.classes == ["beach", "clouds", "person", "sky", "water"]
    check(dataset, tmp_path, train)
    classes = ["sky", "clouds", "person", "water", "beach"]
    by_index = [(p, [classes.index(n) for n in names]) for p, names in train]
    listing = write_txt_list(tmp_path / "idx" / "train.txt", by_index)
    dataset = build_dataset(
        "list",
        "train",
        train_file=str(listing),
        format="txt",
        labels_as="indices",
        classes_file=str(write_classes(tmp_path / "c.txt", classes)),
    )
    assert dataset.classes == classes
    check(dataset, tmp_path / "idx", train)


def test_onehot_class_order_is_the_column_order(tmp_path):
    classes = ["water", "clouds", "sky", "beach", "person"]  # neither sorted nor of first use
    rows = [(p, n) for p, n, _ in LAYOUT_ROWS]
    listing = write_onehot(tmp_path / "all.csv", rows, classes, split=[s for _, _, s in LAYOUT_ROWS])
    for split in ("train", "test"):
        dataset = build_dataset("list", split, file=str(listing), format="onehot", split_values=VALUES)
        assert dataset.classes == classes
        check(dataset, tmp_path, rows_of(split))
    reordered = sorted(classes)
    dataset = build_dataset(
        "list",
        "train",
        train_file=str(listing),
        format="onehot",
        classes_file=str(write_classes(tmp_path / "c.txt", reordered)),
    )
    assert dataset.classes == reordered
    check(dataset, tmp_path, rows)


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 600, text
    return text


def test_a_list_cell_under_format_csv_points_to_csv_list(tmp_path):
    listing = write_csv_list(tmp_path / "data.csv", header=("path", "labels", "split"))
    with pytest.raises(DataError) as err:
        build_dataset("list", "train", train_file=str(listing))
    text = one_line(err)
    assert f"{listing} line 2" in text and "set format: csv_list" in text


def test_a_missing_split_value_names_the_values_and_the_option(tmp_path):
    listing = write_csv_list(tmp_path / "nus_wid_data.csv")
    with pytest.raises(DataError) as err:
        build_dataset("list", "test", file=str(listing), format="csv_list")
    text = one_line(err)
    assert str(listing) in text and "split value test for the test split" in text
    assert "values found: ['train', 'val']" in text and "set split_values:" in text


def test_bad_cells_are_named(tmp_path):
    listing = write_onehot(tmp_path / "t.csv", [("a.jpg", ["sky"])], ["sky", "sea"], images=False)
    listing.write_text(listing.read_text().replace("a.jpg,1,0", "a.jpg,1,-1"))
    with pytest.raises(DataError, match=r"t.csv line 2: column 'sea' holds '-1'; a onehot cell is 0 or 1"):
        build_dataset("list", "train", train_file=str(listing), format="onehot")
    bad = tmp_path / "b.csv"
    bad.write_text("filepath,label\nx.jpg,\"['sky', \"\nz.jpg,['sky']\n")
    with pytest.raises(DataError, match=r"b.csv line 2: labels .* are not a list of names"):
        build_dataset("list", "train", train_file=str(bad), format="csv_list")
    idx = write_txt_list(tmp_path / "i.txt", [("a.jpg", [0, 7])], images=False)
    classes = str(write_classes(tmp_path / "c.txt", ["sky", "sea"]))
    with pytest.raises(DataError, match=r"i.txt line 1: label '7' is not an index in \[0, 2\)"):
        build_dataset("list", "train", train_file=str(idx), format="txt", labels_as="indices", classes_file=classes)


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"file": "a.csv", "train_file": "b.csv"}, "give either file"),
        ({"train_file": "a.csv", "split_column": "split"}, "give it as file"),
        ({"train_file": "a.txt", "format": "tsv"}, "option format must be one of auto, csv"),
        ({"train_file": "a.txt", "format": "txt", "labels_as": "indices"}, "needs classes_file"),
        ({"train_file": "a.txt", "labels_as": "numbers"}, "option labels_as must be one of"),
    ],
)
def test_option_refusals(tmp_path, options, needle):
    write_txt_list(tmp_path / "a.txt", [("x.jpg", ["0"])], images=False)
    (tmp_path / "a.csv").write_text("path,labels,split\nx.jpg,sky,train\n")
    options = {k: (str(tmp_path / v) if k.endswith("file") else v) for k, v in options.items()}
    with pytest.raises(ConfigError) as err:
        build_dataset("list", "train", **options)
    assert needle in one_line(err)
