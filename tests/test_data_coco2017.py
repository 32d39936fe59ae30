"""COCO 2017 (``coco2017``) on a replica of the 2017 release, and the refusals that point a
user of one year's layout to the other's dataset name."""

import json
from pathlib import Path

import pytest

from mlkd.data import build_dataset
from mlkd.errors import ConfigError, DataError
from replicas import COCO_SAMPLE, coco_file_name, write_coco, write_coco_list
from replicas_layouts import COCO2017_CATEGORIES, COCO2017_SAMPLE, coco2017_file_name, write_coco2017

SUBSETS = {"train": "train2017", "test": "val2017"}
ID_ORDER = [name for _, name, _ in sorted(COCO2017_CATEGORIES)]


def expected(subset: str) -> dict[str, set[str]]:
    """file name -> category names, images without annotations left out (keep_empty=False)."""
    return {
        coco2017_file_name(i): {n.lstrip("*") for n in names} for i, names in COCO2017_SAMPLE[subset].items() if names
    }


def labels_by_file(dataset) -> dict[str, set[str]]:
    return {Path(p).name: {dataset.classes[k] for k in labels} for p, labels in dataset.samples}


@pytest.mark.parametrize("images_folder", ["", "images"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_labels_image_by_image(tmp_path, split, images_folder):
    write_coco2017(tmp_path, images_folder=images_folder)
    dataset = build_dataset("coco2017", split, root=str(tmp_path))
    subset = SUBSETS[split]
    assert labels_by_file(dataset) == expected(subset)
    for i, (path, _) in enumerate(dataset.samples):
        assert Path(path).parent == tmp_path / images_folder / subset
        image, target, index = dataset[i]
        assert image.shape == (3, 30, 40) and index == i
        assert {ID_ORDER[k] for k in target.nonzero().flatten().tolist()} == expected(subset)[Path(path).name]


def test_class_order_is_the_category_id_order(tmp_path):
    write_coco2017(tmp_path)
    dataset = build_dataset("coco2017", "test", root=str(tmp_path))
    assert dataset.classes == ID_ORDER and len(ID_ORDER) == 80
    assert dataset.classes != sorted(dataset.classes)
    assert dataset.classes[:3] == ["person", "bicycle", "car"] and dataset.classes[-1] == "toothbrush"
    # the same 80 classes, in the same order, as the paper's 2014 loader
    write_coco(tmp_path / "c14")
    assert build_dataset("coco2014", "test", root=str(tmp_path / "c14")).classes == dataset.classes
    row = dataset.labels_matrix()[[Path(p).name for p, _ in dataset.samples].index("000000000724.jpg")]
    assert row.nonzero()[0].tolist() == [ID_ORDER.index("car"), ID_ORDER.index("stop sign")]


def test_crowd_only_and_empty_images(tmp_path):
    write_coco2017(tmp_path)
    kept = build_dataset("coco2017", "test", root=str(tmp_path), keep_empty=True)
    got = labels_by_file(kept)
    assert len(kept) == 4 and got["000000000632.jpg"] == set()
    assert got["000000000724.jpg"] == {"stop sign", "car"}  # the stop sign is a crowd annotation


@pytest.mark.parametrize("built, other", [("coco2014", "coco2017"), ("coco2017", "coco2014")])
def test_the_other_years_root_is_named(tmp_path, built, other):
    (write_coco2017 if other == "coco2017" else write_coco)(tmp_path)
    with pytest.raises(DataError) as err:
        build_dataset(built, "train", root=str(tmp_path))
    text = str(err.value)
    assert "\n" not in text and f"instances_train{built[-4:]}.json" in text
    assert f"use data.name={other}" in text and str(tmp_path) in text
    if other == "coco2017":
        assert "the paper used 2014" in text


def test_a_root_without_coco_says_where_the_files_go(tmp_path):
    with pytest.raises(
        DataError,
        match=r"instances_val2017.json; set root to the folder holding "
        r"train2017/, val2017/ and annotations/",
    ):
        build_dataset("coco2017", "test", root=str(tmp_path))


@pytest.mark.parametrize("name", ["coco2014", "coco2017"])
def test_one_list_file_for_both_splits_is_refused(tmp_path, name):
    listing = write_coco_list(tmp_path / "val_anno.json", "val2014", COCO_SAMPLE["val2014"])
    with pytest.raises(ConfigError) as err:
        build_dataset(name, "train", root=str(tmp_path), list_file=str(listing))
    text = str(err.value)
    assert str(listing) in text and "both the train and the test split" in text
    assert "list_file: {train: <train list>, test: <val list>}" in text and "\n" not in text


def test_swapped_list_files_are_named(tmp_path):
    write_coco(tmp_path)
    lists = {
        s: write_coco_list(tmp_path / f"{s}_anno.json", sub, COCO_SAMPLE[sub])
        for s, sub in (("train", "train2014"), ("test", "val2014"))
    }
    swapped = {"train": str(lists["test"]), "test": str(lists["train"])}
    with pytest.raises(
        DataError,
        match=r"coco2014 test: list file .*train_anno.json "
        r"\(list_file.test\) names train2014 images",
    ):
        build_dataset("coco2014", "test", root=str(tmp_path), list_file=swapped)


def test_l2d_style_list_for_2017(tmp_path):
    write_coco2017(tmp_path)
    alphabetical = sorted(ID_ORDER)
    entries = [
        {"file_name": coco2017_file_name(285), "labels": [alphabetical.index("bear")]},
        {"file_name": coco2017_file_name(139), "labels": [alphabetical.index("tv"), alphabetical.index("person")]},
    ]
    (tmp_path / "val.json").write_text(json.dumps(entries))
    dataset = build_dataset(
        "coco2017",
        "test",
        root=str(tmp_path),
        list_file={"train": str(tmp_path / "x.json"), "test": str(tmp_path / "val.json")},
    )
    assert labels_by_file(dataset) == {"000000000285.jpg": {"bear"}, "000000000139.jpg": {"tv", "person"}}


def test_coco2014_file_names_are_unchanged(tmp_path):
    write_coco(tmp_path, sample={"train2014": {1: ["dog"]}, "val2014": {2: ["cat"]}})
    dataset = build_dataset("coco2014", "test", root=str(tmp_path))
    assert [Path(p).name for p, _ in dataset.samples] == [coco_file_name("val2014", 2)]
