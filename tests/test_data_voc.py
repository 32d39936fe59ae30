from pathlib import Path

import pytest
import torch

from mlkd.data import build_dataset
from mlkd.data.batch import collate
from mlkd.data.voc import VOC_CLASSES
from mlkd.errors import ConfigError, DataError
from replicas import VOC_SAMPLE, corrupt_file, truncate_file, write_voc

SETS = {"train": "trainval", "test": "test"}


def expected(image_set: str, image_id: str, difficult: str) -> set[str]:
    return {name for name, hard in VOC_SAMPLE[image_set][image_id] if difficult == "positive" or not hard}


def check_labels(dataset, split: str, difficult: str) -> None:
    image_set = SETS[split]
    assert len(dataset) == len(VOC_SAMPLE[image_set])
    assert dataset.classes == VOC_CLASSES
    for i, (path, labels) in enumerate(dataset.samples):
        image_id = Path(path).stem
        assert Path(path).parent.name == "JPEGImages"
        assert {VOC_CLASSES[k] for k in labels} == expected(image_set, image_id, difficult)
        target = dataset.target(i)
        assert target.dtype == torch.float32 and target.shape == (20,)
        assert {VOC_CLASSES[k] for k in torch.nonzero(target).flatten().tolist()} == expected(
            image_set, image_id, difficult
        )


@pytest.mark.parametrize("layout", ["devkit", "separate", "l2d"])
def test_labels_image_by_image(tmp_path, layout):
    options = write_voc(tmp_path, layout=layout)
    for split in ("train", "test"):
        check_labels(build_dataset("voc2007", split, **options), split, "positive")


def test_root_can_be_the_voc2007_folder(tmp_path):
    write_voc(tmp_path)
    dataset = build_dataset("voc2007", "test", root=str(tmp_path / "VOCdevkit" / "VOC2007"))
    check_labels(dataset, "test", "positive")


@pytest.mark.parametrize("difficult", ["positive", "negative", "ignore"])
def test_difficult_policies(tmp_path, difficult):
    options = write_voc(tmp_path)
    train = build_dataset("voc2007", "train", difficult=difficult, **options)
    check_labels(train, "train", difficult)
    by_id = {Path(p).stem: labels for p, labels in train.samples}
    tv, plant, person = (VOC_CLASSES.index(c) for c in ("tvmonitor", "pottedplant", "person"))
    if difficult == "positive":
        assert by_id["000012"] == (tv,)
    else:
        assert by_id["000012"] == ()  # tvmonitor only as difficult
        assert person in by_id["000009"]  # one non-difficult person is enough
    only = {Path(p).stem: d for (p, _), d in zip(train.samples, train.difficult_only)}
    assert only["000005"] == (plant,) and only["000012"] == (tv,) and only["000009"] == ()


def test_getitem_and_transform(tmp_path):
    options = write_voc(tmp_path)
    dataset = build_dataset("voc2007", "test", transform=lambda im: torch.zeros(3, 8, 8), **options)
    image, target, index = dataset[2]
    assert image.shape == (3, 8, 8) and index == 2
    assert torch.equal(target, dataset.target(2))
    plain = build_dataset("voc2007", "test", **options)
    image, _, _ = plain[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_bad_options(tmp_path):
    options = write_voc(tmp_path)
    with pytest.raises(ConfigError, match="difficult"):
        build_dataset("voc2007", "train", difficult="maybe", **options)
    with pytest.raises(DataError, match="trainval.txt"):
        build_dataset("voc2007", "train", root=str(tmp_path / "nowhere"))


def test_malformed_xml_names_the_file(tmp_path):
    options = write_voc(tmp_path)
    xml = tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000007.xml"
    xml.write_text("<annotation><object><name>car</name></object>")
    with pytest.raises(DataError, match="malformed XML.*000007.xml"):
        build_dataset("voc2007", "train", **options)


def test_missing_xml_names_the_file(tmp_path):
    options = write_voc(tmp_path)
    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000002.xml").unlink()
    with pytest.raises(DataError, match="000002.xml"):
        build_dataset("voc2007", "test", **options)


def test_unknown_class_names_file_and_class(tmp_path):
    sample = {"trainval": {"000005": [("chair", 0), ("unicorn", 0)]}, "test": {}}
    options = write_voc(tmp_path, sample=sample)
    with pytest.raises(DataError, match=r"unknown class 'unicorn' in .*000005.xml"):
        build_dataset("voc2007", "train", **options)


def test_empty_split_names_the_image_set(tmp_path):
    options = write_voc(tmp_path, sample={"trainval": VOC_SAMPLE["trainval"], "test": {}})
    with pytest.raises(DataError, match=r"empty.*test.txt"):
        build_dataset("voc2007", "test", **options)


def test_missing_image_error_or_skip(tmp_path, caplog):
    options = write_voc(tmp_path)
    jpeg = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000007.jpg"
    jpeg.unlink()
    with pytest.raises(DataError, match="000007.jpg"):
        build_dataset("voc2007", "train", **options)
    dataset = build_dataset("voc2007", "train", on_missing="skip", **options)
    assert len(dataset) == 3 and dataset.missing == 1
    assert dataset.missing_files == [str(jpeg.resolve())]
    assert len(dataset.difficult_only) == 3
    assert "000007.jpg" in caplog.text


@pytest.mark.parametrize("damage", [corrupt_file, truncate_file])
def test_bad_jpeg_error_or_skip(tmp_path, damage):
    options = write_voc(tmp_path)
    jpeg = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000002.jpg"
    damage(jpeg)
    dataset = build_dataset("voc2007", "test", **options)  # found at load time, not before
    i = [Path(p).stem for p, _ in dataset.samples].index("000002")
    with pytest.raises(DataError, match="000002.jpg"):
        dataset[i]
    skipping = build_dataset(
        "voc2007", "test", on_bad_image="skip", transform=lambda im: torch.zeros(3, 4, 4), **options
    )
    assert skipping[i] is None and skipping.skipped == 1
    batch = collate([skipping[k] for k in range(len(skipping))])
    assert batch["skipped"] == 1 and batch["images"].shape == (2, 3, 4, 4)
