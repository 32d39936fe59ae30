import logging
from pathlib import Path

import pytest

from mlkd.data import build_dataset
from mlkd.errors import DataError
from replicas import NUS_CONCEPTS, NUS_SAMPLE, write_nuswide

PARTS = {"train": "Train", "test": "Test"}


def check_labels(dataset, root: Path, part: str, skip=()) -> None:
    rows = [r for r in NUS_SAMPLE[part] if r[1] not in skip]
    assert dataset.classes == NUS_CONCEPTS  # the file's order, not alphabetical
    assert len(dataset) == len(rows)
    for (path, labels), (folder, name, concepts) in zip(dataset.samples, rows):
        assert Path(path) == root / "Flickr" / folder / name
        assert {dataset.classes[k] for k in labels} == set(concepts)
        assert set(dataset.target(dataset.samples.index((path, labels))).nonzero().flatten().tolist()) == set(labels)


@pytest.mark.parametrize("sep", ["\\", "/"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_labels_image_by_image(tmp_path, split, sep):
    write_nuswide(tmp_path, sep=sep)
    dataset = build_dataset("nuswide", split, root=str(tmp_path))
    check_labels(dataset, tmp_path, PARTS[split])
    assert dataset.missing == 0
    image, target, index = dataset[0]
    assert image.shape == (3, 30, 40) and target.shape == (5,) and index == 0


def test_windows_absolute_paths_in_list(tmp_path):
    write_nuswide(tmp_path)
    listing = tmp_path / "ImageList" / "TestImagelist.txt"
    listing.write_text("".join(f"C:\\ImageData\\Flickr\\{f}\\{n}\r\n" for f, n, _ in NUS_SAMPLE["Test"]), newline="")
    check_labels(build_dataset("nuswide", "test", root=str(tmp_path)), tmp_path, "Test")


def test_missing_images_are_counted_and_logged(tmp_path, caplog):
    gone = ("0002_1234567890.jpg", "0004_3333333333.jpg")
    write_nuswide(tmp_path, missing=gone)
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset("nuswide", "train", root=str(tmp_path))
    assert dataset.missing == 2
    assert [Path(p).name for p in dataset.missing_files] == list(gone)
    check_labels(dataset, tmp_path, "Train", skip=gone)
    assert "2 of 5 images" in caplog.text
    with pytest.raises(DataError, match="0002_1234567890.jpg"):
        build_dataset("nuswide", "train", root=str(tmp_path), on_missing="error")


def test_keep_empty_false(tmp_path):
    write_nuswide(tmp_path)
    dataset = build_dataset("nuswide", "test", root=str(tmp_path), keep_empty=False)
    assert [Path(p).name for p, _ in dataset.samples] == ["0001_5555555555.jpg", "0002_6666666666.jpg"]


def test_custom_image_dir(tmp_path):
    write_nuswide(tmp_path / "nus")
    (tmp_path / "nus" / "Flickr").rename(tmp_path / "images")
    dataset = build_dataset("nuswide", "test", root=str(tmp_path / "nus"), image_dir=str(tmp_path / "images"))
    assert dataset.missing == 0 and len(dataset) == 3


def test_misaligned_label_file(tmp_path):
    write_nuswide(tmp_path)
    bad = tmp_path / "TrainTestLabels" / "Labels_water_Test.txt"
    bad.write_text("0\n1\n")
    with pytest.raises(DataError, match=r"Labels_water_Test.txt has 2 labels .* 3 images"):
        build_dataset("nuswide", "test", root=str(tmp_path))


def test_label_not_binary(tmp_path):
    write_nuswide(tmp_path)
    bad = tmp_path / "TrainTestLabels" / "Labels_sky_Test.txt"
    bad.write_text("0\n2\n1\n")
    with pytest.raises(DataError, match=r"Labels_sky_Test.txt line 2: '2'"):
        build_dataset("nuswide", "test", root=str(tmp_path))


def test_missing_files_are_named(tmp_path):
    write_nuswide(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_beach_Train.txt").unlink()
    with pytest.raises(DataError, match="Labels_beach_Train.txt"):
        build_dataset("nuswide", "train", root=str(tmp_path))
    with pytest.raises(DataError, match="Concepts81.txt"):
        build_dataset("nuswide", "train", root=str(tmp_path / "nowhere"))


def test_empty_split(tmp_path):
    write_nuswide(tmp_path, sample={"Train": NUS_SAMPLE["Train"], "Test": []})
    with pytest.raises(DataError, match=r"empty.*TestImagelist.txt"):
        build_dataset("nuswide", "test", root=str(tmp_path))


def test_all_images_missing_is_an_empty_split(tmp_path):
    write_nuswide(tmp_path, missing=[n for _, n, _ in NUS_SAMPLE["Test"]])
    with pytest.raises(DataError, match="empty"):
        build_dataset("nuswide", "test", root=str(tmp_path))


def test_bad_list_line(tmp_path):
    write_nuswide(tmp_path)
    (tmp_path / "ImageList" / "TestImagelist.txt").write_text("a\\b.jpg\nnoslash.jpg\nc\\d.jpg\n")
    with pytest.raises(DataError, match=r"TestImagelist.txt line 2"):
        build_dataset("nuswide", "test", root=str(tmp_path))
