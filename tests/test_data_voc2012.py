"""VOC 2012 (``voc2012``) and VOC 07+12 (``voc0712``) on replicas of the devkit layout, checked
against the per-class set files; a folder of the wrong year is refused, never loaded."""

from pathlib import Path

import pytest

from mlkd.data import build_dataset
from mlkd.errors import ConfigError, DataError
from replicas import VOC_SAMPLE, write_voc
from replicas_layouts import VOC2012_SAMPLE, VOC_DEVKIT_CLASSES, read_class_set_files, write_voc2012


def from_set_files(folder: Path, image_set: str, difficult: str) -> dict[str, set[str]]:
    """Labels by image id from the per-class set files: 1 present, 0 only difficult."""
    keep = (0, 1) if difficult == "positive" else (1,)
    table = read_class_set_files(folder, image_set, VOC_DEVKIT_CLASSES)
    return {i: {c for c, v in row.items() if v in keep} for i, row in table.items()}


def labels_by_id(dataset) -> dict[str, set[str]]:
    return {Path(p).stem: {dataset.classes[k] for k in labels} for p, labels in dataset.samples}


def devkit(tmp_path) -> Path:
    """tmp/VOCdevkit with VOC2007 (trainval + test) and VOC2012, as the three tarballs extract."""
    write_voc(tmp_path)
    write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    return tmp_path / "VOCdevkit"


@pytest.mark.parametrize("difficult", ["positive", "negative"])
@pytest.mark.parametrize("split, image_set", [("train", "train"), ("test", "val")])
def test_voc2012_labels_image_by_image(tmp_path, split, image_set, difficult):
    folder = write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    for root in (tmp_path / "VOCdevkit", folder):
        dataset = build_dataset("voc2012", split, root=str(root), difficult=difficult)
        want = from_set_files(folder, image_set, difficult)
        assert labels_by_id(dataset) == want and len(dataset) == len(VOC2012_SAMPLE[image_set])
        for i, (path, _labels) in enumerate(dataset.samples):
            assert Path(path).parent == folder / "JPEGImages"
            target = dataset.target(i)
            assert {dataset.classes[k] for k in target.nonzero().flatten().tolist()} == want[Path(path).stem]


def test_voc2012_parts_owner_and_absent_difficult(tmp_path):
    folder = write_voc2012(tmp_path / "VOC2012")
    train = labels_by_id(build_dataset("voc2012", "train", root=str(folder)))
    assert train["2008_000008"] == {"horse", "person"}  # <part><name>head</name> is no class
    assert train["2009_000040"] == {"sofa", "cat"}  # no <difficult> tag: not difficult
    strict = build_dataset("voc2012", "train", root=str(folder), difficult="negative")
    assert labels_by_id(strict)["2009_000040"] == {"cat"}
    only = {Path(p).stem: d for (p, _), d in zip(strict.samples, strict.difficult_only)}
    assert only["2009_000040"] == (VOC_DEVKIT_CLASSES.index("sofa"),)


def test_class_order_is_the_devkits(tmp_path):
    root = devkit(tmp_path)
    for name in ("voc2007", "voc2012", "voc0712"):
        dataset = build_dataset(name, "test", root=str(root))
        assert dataset.classes == VOC_DEVKIT_CLASSES
        row = dataset.labels_matrix()[0]
        assert [VOC_DEVKIT_CLASSES[k] for k in row.nonzero()[0]] == sorted(
            labels_by_id(dataset)[Path(dataset.samples[0][0]).stem], key=VOC_DEVKIT_CLASSES.index
        )


def test_voc2012_trainval_set(tmp_path):
    folder = write_voc2012(tmp_path / "VOC2012")
    dataset = build_dataset("voc2012", "train", root=str(folder), train_set="trainval")
    assert labels_by_id(dataset) == from_set_files(folder, "trainval", "positive")
    assert len(dataset) == 7


def test_voc0712(tmp_path):
    root = devkit(tmp_path)
    train = build_dataset("voc0712", "train", root=str(root))
    want = {i: {n for n, _ in objs} for i, objs in VOC_SAMPLE["trainval"].items()}
    want |= from_set_files(root / "VOC2012", "trainval", "positive")
    assert labels_by_id(train) == want and len(train) == 4 + 7
    assert [Path(p).parent.parent.name for p, _ in train.samples] == ["VOC2007"] * 4 + ["VOC2012"] * 7
    assert len(train.difficult_only) == 11
    test = build_dataset("voc0712", "test", root=str(root))
    assert labels_by_id(test) == {i: {n for n, _ in objs} for i, objs in VOC_SAMPLE["test"].items()}
    assert "VOC2007" in test.source and "test.txt" in test.source


def test_voc0712_with_2012_apart(tmp_path):
    write_voc(tmp_path / "a")
    write_voc2012(tmp_path / "b" / "VOCdevkit" / "VOC2012")
    train = build_dataset("voc0712", "train", root=str(tmp_path / "a"), root2012=str(tmp_path / "b"))
    assert len(train) == 11


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_2012_folder_is_not_loaded_as_voc2007(tmp_path):
    folder = write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    with pytest.raises(DataError) as err:
        build_dataset("voc2007", "train", root=str(folder))
    text = one_line(err)
    assert f"{folder} is a VOC2012 folder, not VOC2007" in text
    assert "data.name=voc2007 (trainval/test), voc2012 (train/val) or voc0712 (07+12)" in text


def test_a_devkit_with_only_2012_names_it(tmp_path):
    write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    with pytest.raises(DataError) as err:
        build_dataset("voc2007", "train", root=str(tmp_path / "VOCdevkit"))
    text = one_line(err)
    assert "no ImageSets/Main/trainval.txt of VOC2007" in text
    assert str(tmp_path / "VOCdevkit" / "VOC2012") in text and "voc2012" in text


def test_a_2007_folder_is_not_loaded_as_voc2012(tmp_path):
    write_voc(tmp_path)
    with pytest.raises(DataError) as err:
        build_dataset("voc2012", "test", root=str(tmp_path / "VOCdevkit" / "VOC2007"), test_set="trainval")
    assert "is a VOC2007 folder, not VOC2012" in one_line(err)


def test_a_renamed_folder_is_told_by_its_ids(tmp_path):
    write_voc2012(tmp_path / "myvoc")
    with pytest.raises(DataError, match=r"myvoc is a VOC2012 folder, not VOC2007"):
        build_dataset("voc2007", "train", root=str(tmp_path / "myvoc"))
    assert len(build_dataset("voc2012", "train", root=str(tmp_path / "myvoc"))) == 4


def test_voc2012_test_set_is_refused(tmp_path):
    folder = write_voc2012(tmp_path / "VOC2012")
    with pytest.raises(ConfigError) as err:
        build_dataset("voc2012", "test", root=str(folder), test_set="test")
    assert "no public annotations" in one_line(err) and "test_set: val" in str(err.value)
    with pytest.raises(ConfigError, match="option train_set must be one of"):
        build_dataset("voc2012", "train", root=str(folder), train_set="everything")
