import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mlkd.data import build_dataset, dataset_names
from mlkd.data.batch import collate
from mlkd.data.images import MultiLabelImageDataset
from mlkd.data.summary import format_summary, summarize_dataset
from mlkd.errors import ConfigError, DataError
from replicas import LIST_SAMPLE, corrupt_file, truncate_file, write_classes, write_jpeg, write_list

CLASSES = ["person", "dog", "cat", "zebra", "horse"]  # deliberately not sorted


def small(image):
    return torch.zeros(3, 4, 4)


def make(tmp_path, fmt: str, classes=CLASSES, **extra):
    files = {s: write_list(tmp_path / f"{s}.{fmt}", rows) for s, rows in LIST_SAMPLE.items()}
    options = {"train_file": str(files["train"]), "test_file": str(files["test"]), **extra}
    if classes is not None:
        options["classes_file"] = str(write_classes(tmp_path / "classes.txt", classes))
    return options


def test_registered():
    assert {"voc2007", "coco2014", "nuswide", "list"} <= set(dataset_names())


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_labels_image_by_image(tmp_path, fmt, split):
    dataset = build_dataset("list", split, **make(tmp_path, fmt))
    assert dataset.classes == CLASSES
    assert len(dataset) == len(LIST_SAMPLE[split])
    for i, ((path, labels), (rel, names)) in enumerate(zip(dataset.samples, LIST_SAMPLE[split])):
        assert Path(path) == tmp_path / rel
        assert [CLASSES[k] for k in labels] == sorted(names, key=CLASSES.index)
        image, target, index = dataset[i]
        assert image.shape == (3, 30, 40) and index == i
        assert target.tolist() == [float(c in names) for c in CLASSES]


def test_inferred_classes_are_the_sorted_union_of_both_splits(tmp_path):
    options = make(tmp_path, "csv", classes=None)
    train = build_dataset("list", "train", **options)
    test = build_dataset("list", "test", **options)
    assert train.classes == test.classes == ["cat", "dog", "person", "zebra"]
    only_train = build_dataset("list", "train", train_file=options["train_file"])
    assert only_train.classes == ["cat", "dog", "person"]


def test_image_root_and_keep_empty(tmp_path):
    rows = LIST_SAMPLE["train"]
    listing = write_list(tmp_path / "lists" / "train.json", rows, image_root=tmp_path / "pics")
    dataset = build_dataset(
        "list", "train", train_file=str(listing), keep_empty=False, image_root=str(tmp_path / "pics")
    )
    assert [Path(p) for p, _ in dataset.samples] == [tmp_path / "pics" / r for r, n in rows if n]


def test_csv_quoting_and_semicolon_free_format(tmp_path):
    write_jpeg(tmp_path / "a,b.jpg")
    listing = tmp_path / "t.csv"
    listing.write_text('labels,path,extra\n" dog | cat ","a,b.jpg",x\n')
    dataset = build_dataset("list", "train", train_file=str(listing))
    assert dataset.classes == ["cat", "dog"] and dataset.samples[0][1] == (0, 1)


@pytest.mark.parametrize("fmt, where", [("csv", "line 3"), ("json", "entry 1")])
def test_unknown_class_names_file_entry_and_name(tmp_path, fmt, where):
    options = make(tmp_path, fmt, classes=["person", "dog", "horse"])
    with pytest.raises(DataError, match=rf"train.{fmt} {where}: unknown class 'cat'"):
        build_dataset("list", "train", **options)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"path": "a.jpg", "labels": ["x"]},')
    with pytest.raises(DataError, match="malformed JSON.*bad.json"):
        build_dataset("list", "train", train_file=str(bad))
    bad.write_text('[{"path": "a.jpg", "labels": "x"}]')
    with pytest.raises(DataError, match="bad.json entry 0"):
        build_dataset("list", "train", train_file=str(bad))
    csv_bad = tmp_path / "bad.csv"
    csv_bad.write_text("file,tags\na.jpg,x\n")
    csv_bad.write_text("picture,classes\na.jpg,x\n")
    with pytest.raises(
        DataError,
        match=r"bad.csv has no column one of path, .*set the option "
        r"path_column",
    ):
        build_dataset("list", "train", train_file=str(csv_bad))
    with pytest.raises(
        ConfigError,
        match=r"list.txt is neither .csv nor .json; set the option "
        r"format \(csv, csv_list, json, txt, onehot\)",
    ):
        build_dataset("list", "train", train_file=str(tmp_path / "list.txt"))
    with pytest.raises(DataError, match="not found.*nope.csv"):
        build_dataset("list", "train", train_file=str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match="test_file"):
        build_dataset("list", "test", train_file=str(csv_bad))
    bad.write_text('[{"path": "a.jpg", "labels": ["a"]}]')
    classes = write_classes(tmp_path / "c.txt", ["a", "b", "a"])
    with pytest.raises(DataError, match="c.txt repeats a"):
        build_dataset("list", "train", train_file=str(bad), classes_file=str(classes))


def test_empty_split_names_the_file(tmp_path):
    empty = tmp_path / "test.csv"
    empty.write_text("path,labels\n")
    classes = write_classes(tmp_path / "classes.txt", CLASSES)
    with pytest.raises(DataError, match=r"empty.*test.csv"):
        build_dataset("list", "test", test_file=str(empty), classes_file=str(classes))


def test_missing_image_error_or_skip(tmp_path):
    options = make(tmp_path, "csv")
    (tmp_path / "img" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of 4 images listed in .*train.csv .*b.jpg"):
        build_dataset("list", "train", **options)
    dataset = build_dataset("list", "train", on_missing="skip", **options)
    assert len(dataset) == 3 and dataset.missing == 1
    with pytest.raises(ConfigError, match="on_missing"):
        build_dataset("list", "train", on_missing="ignore", **options)


@pytest.mark.parametrize("damage", [corrupt_file, truncate_file])
def test_bad_image_error_or_skip(tmp_path, damage, caplog):
    options = make(tmp_path, "json")
    damage(tmp_path / "img" / "d.jpg")
    strict = build_dataset("list", "train", transform=small, **options)
    assert strict[0][0].shape == (3, 4, 4)
    with pytest.raises(DataError, match=r"cannot read image .*d.jpg.*on_bad_image: skip"):
        strict[3]
    lenient = build_dataset("list", "train", transform=small, on_bad_image="skip", **options)
    assert lenient[3] is None and lenient.skipped == 1
    assert "d.jpg" in caplog.text
    batch = collate([lenient[i] for i in range(4)])
    assert batch["skipped"] == 1 and batch["index"].tolist() == [0, 1, 2]


def test_bad_image_in_a_worker_is_a_data_error(tmp_path):
    options = make(tmp_path, "csv")
    corrupt_file(tmp_path / "img" / "a.jpg")
    dataset = build_dataset("list", "train", transform=small, **options)
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate)
    with pytest.raises(DataError, match="a.jpg"):
        list(loader)
    dataset.on_bad_image = "skip"
    loader = DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=collate)
    (batch,) = list(loader)
    assert batch["skipped"] == 1 and batch["images"].shape == (3, 3, 4, 4)


def test_base_dataset_rejects_empty_and_labels_matrix(tmp_path):
    with pytest.raises(DataError, match="empty"):
        MultiLabelImageDataset([], ["a"], source="nothing.txt")
    path = write_jpeg(tmp_path / "x.jpg")
    dataset = MultiLabelImageDataset([(path, (1, 1, 0)), (path, ())], ["a", "b", "c"])
    assert dataset.labels_matrix().dtype == np.uint8
    assert dataset.labels_matrix().tolist() == [[1, 1, 0], [0, 0, 0]]


def test_summary(tmp_path):
    options = make(tmp_path, "csv")
    (tmp_path / "img" / "e.jpg").unlink()
    train = build_dataset("list", "train", **options)
    test = build_dataset("list", "test", on_missing="skip", **options)
    s = summarize_dataset(train)
    assert s["images"] == 4 and s["classes"] == 5
    assert s["labels_per_image"] == pytest.approx(4 / 4)
    assert s["images_without_labels"] == 1 and s["max_labels"] == 2
    assert s["class_counts"] == {"person": 2, "dog": 1, "cat": 1, "zebra": 0, "horse": 0}
    assert s["classes_without_images"] == ["zebra", "horse"]
    t = summarize_dataset(test)
    assert t["images"] == 1 and t["missing"] == 1 and t["missing_examples"][0].endswith("e.jpg")
    text = format_summary({"train": s, "test": t})
    assert "| train | 4 | 5 | 1.000 | 2 | 1 | 0 | 0 |" in text
    assert "| test | 1 | 5 | 1.000 | 1 | 0 | 1 | 0 |" in text
    assert "| person | 2 | 0 |" in text and "| zebra | 0 | 1 |" in text
    assert "e.jpg" in text
    json.dumps(s)  # plain types only


@pytest.mark.parametrize(
    "name, options, word",
    [
        ("list", {"trainfile": "x.csv"}, "trainfile"),
        ("voc2007", {}, "root"),
        ("coco2014", {"root": "x", "listfile": "y"}, "listfile"),
        ("nuswide", {"root": "x", "missing": "skip"}, "missing"),
    ],
)
def test_bad_option_names_are_config_errors(name, options, word):
    with pytest.raises(ConfigError, match=rf"{name}.*{word}.*its options are: .*on_bad_image"):
        build_dataset(name, "train", **options)
