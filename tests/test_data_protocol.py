"""Every registered dataset, and every wrapper the loaders put around one, is a
``MultiLabelDataset``: classes, items, labels_matrix and the integrity fields, read as plain
attributes (tiny replicas of each format, as the data tests build them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlkd.data import build_dataset, dataset_names
from mlkd.data.holdout import split_train
from mlkd.data.loaders import ItemSeeded
from mlkd.data.protocol import BaseDataset, MultiLabelDataset
from mlkd.data.views import SeededViews
from replicas import LIST_SAMPLE, write_classes, write_coco, write_list, write_nuswide, write_voc
from replicas_layouts import write_coco2017, write_voc2012


def _voc_devkit(tmp_path):
    write_voc(tmp_path)
    write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    return {"root": str(tmp_path / "VOCdevkit")}


def _list(tmp_path):
    files = {s: write_list(tmp_path / f"{s}.csv", rows) for s, rows in LIST_SAMPLE.items()}
    return {
        "train_file": str(files["train"]),
        "test_file": str(files["test"]),
        "classes_file": str(write_classes(tmp_path / "classes.txt", ["person", "dog", "cat", "zebra", "horse"])),
    }


def _root(write):
    def options(tmp_path):
        write(tmp_path)
        return {"root": str(tmp_path)}

    return options


# name -> tmp_path -> the builder's options
OPTIONS = {
    "mosaic": lambda tmp_path: dict(source="digits", num_train=200, num_test=120, seed=3, cache_dir=tmp_path),
    "coco_scenes": lambda tmp_path: dict(num_train=48, num_test=32, img_size=64, seed=5, cache_dir=tmp_path),
    "voc2007": lambda tmp_path: write_voc(tmp_path),
    "voc2012": _voc_devkit,
    "voc0712": _voc_devkit,
    "coco2014": _root(write_coco),
    "coco2017": _root(write_coco2017),
    "nuswide": _root(write_nuswide),
    "list": _list,
}


def test_every_registered_dataset_is_covered_here():
    assert sorted(dataset_names()) == sorted(OPTIONS)


def check(dataset):
    assert isinstance(dataset, MultiLabelDataset)
    q = len(dataset.classes)
    image, target, index = dataset[0]
    assert image.ndim == 3 and image.shape[0] == 3 and target.shape == (q,) and index == 0
    labels = dataset.labels_matrix()
    assert labels.shape == (len(dataset), q) and labels.dtype == np.uint8
    assert np.array_equal(labels[0], target.numpy().astype(np.uint8))
    assert isinstance(dataset.files_checked, bool) and dataset.missing == len(dataset.missing_files)
    assert dataset.skipped == 0 and list(dataset.unreadable_files) == []


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_registered_datasets_and_their_wrappers_follow_the_protocol(name, tmp_path):
    dataset = build_dataset(name, "train", None, **OPTIONS[name](tmp_path))
    assert isinstance(dataset, BaseDataset)
    check(dataset)
    assert dataset.files_checked and dataset.missing == 0
    train, held = split_train(dataset, None, 0.5)
    for wrapper in (train, held, SeededViews(dataset, 0)):
        check(wrapper)
    seeded = ItemSeeded(dataset, 0)
    assert isinstance(seeded, MultiLabelDataset) and seeded.classes == dataset.classes
    assert np.array_equal(seeded.labels_matrix(), dataset.labels_matrix())


def test_defaults_and_what_wrappers_forward():
    class Tiny(BaseDataset):
        classes, transform = ["a", "b"], None

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 2, 2), torch.tensor([float(i), 1.0]), i

    tiny = Tiny()
    check(tiny)  # the base's labels_matrix reads every item
    assert tiny.labels_matrix().tolist() == [[0, 1], [1, 1]]
    assert (tiny.files_checked, tiny.missing, tuple(tiny.missing_files), tiny.skipped) == (True, 0, (), 0)
    tiny.missing, tiny.missing_files, tiny.unreadable_files = 1, ["x.jpg"], ["y.jpg"]
    for wrapper in (SeededViews(tiny, 0), ItemSeeded(tiny, 0), split_train(tiny, None, 0.5)[1]):
        assert (wrapper.missing, wrapper.missing_files, wrapper.unreadable_files) == (1, ["x.jpg"], ["y.jpg"])
    assert not isinstance(torch.utils.data.TensorDataset(torch.zeros(2)), MultiLabelDataset)
