import json
from pathlib import Path

import pytest

from mlkd.data import build_dataset
from mlkd.data.coco import COCO_CATEGORIES, COCO_CLASSES
from mlkd.errors import ConfigError, DataError
from replicas import COCO_SAMPLE, coco_file_name, corrupt_file, write_coco, write_coco_list

SUBSETS = {"train": "train2014", "test": "val2014"}


def expected_labels(subset: str) -> dict[str, set[str]]:
    return {coco_file_name(subset, i): {n.lstrip("*") for n in names} for i, names in COCO_SAMPLE[subset].items()}


def labels_by_file(dataset) -> dict[str, set[str]]:
    return {Path(p).name: {dataset.classes[k] for k in labels} for p, labels in dataset.samples}


def test_category_id_order():
    assert len(COCO_CATEGORIES) == 80 and len(set(COCO_CLASSES)) == 80
    ids = [cid for cid, _ in COCO_CATEGORIES]
    assert ids == sorted(ids) and ids[0] == 1 and ids[-1] == 90
    assert COCO_CLASSES[:4] == ["person", "bicycle", "car", "motorcycle"]
    assert dict(COCO_CATEGORIES)[44] == "bottle" and dict(COCO_CATEGORIES)[90] == "toothbrush"
    assert COCO_CLASSES != sorted(COCO_CLASSES)


@pytest.mark.parametrize("split", ["train", "test"])
def test_instances_labels_image_by_image(tmp_path, split, capsys):
    write_coco(tmp_path)
    dataset = build_dataset("coco2014", split, root=str(tmp_path))
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed
    assert dataset.classes == COCO_CLASSES
    subset = SUBSETS[split]
    want = {f: names for f, names in expected_labels(subset).items() if names}  # empty dropped
    assert labels_by_file(dataset) == want
    for path, _ in dataset.samples:
        assert Path(path).parent == tmp_path / subset
    for i in range(len(dataset)):
        image, target, index = dataset[i]
        assert image.shape == (3, 30, 40) and index == i
        assert {COCO_CLASSES[k] for k in target.nonzero().flatten().tolist()} == want[Path(dataset.samples[i][0]).name]


def test_crowd_annotation_counts_and_keep_empty(tmp_path):
    write_coco(tmp_path)
    kept = build_dataset("coco2014", "train", root=str(tmp_path), keep_empty=True)
    got = labels_by_file(kept)
    assert got[coco_file_name("train2014", 34)] == set()
    assert got[coco_file_name("train2014", 25)] == {"giraffe", "zebra"}  # zebra is crowd
    assert len(kept) == 4


@pytest.mark.parametrize("split", ["train", "test"])
def test_l2d_list_file_matches_instances(tmp_path, split):
    write_coco(tmp_path)
    subset = SUBSETS[split]
    lists = {s: write_coco_list(tmp_path / f"{s}_anno.json", SUBSETS[s], COCO_SAMPLE[SUBSETS[s]]) for s in SUBSETS}
    from_lists = build_dataset("coco2014", split, root=str(tmp_path), list_file={s: str(p) for s, p in lists.items()})
    from_instances = build_dataset("coco2014", split, root=str(tmp_path))
    assert from_lists.classes == from_instances.classes == COCO_CLASSES
    assert sorted(from_lists.samples) == sorted(from_instances.samples)
    assert (from_lists.labels_matrix().sum(0) == from_instances.labels_matrix().sum(0)).all()
    assert labels_by_file(from_lists) == {f: n for f, n in expected_labels(subset).items() if n}


def test_list_indices_are_alphabetical(tmp_path):
    write_coco(tmp_path)
    image = coco_file_name("val2014", 42)
    alphabetical = sorted(COCO_CLASSES)
    entries = [{"file_name": image, "labels": [alphabetical.index("bicycle"), 0]}]
    (tmp_path / "val.json").write_text(json.dumps(entries))
    dataset = build_dataset("coco2014", "test", root=str(tmp_path), list_file={"test": str(tmp_path / "val.json")})
    assert dataset.samples[0][1] == (COCO_CLASSES.index("bicycle"), COCO_CLASSES.index("airplane"))
    assert dataset.samples[0][1] == (1, 4)


def test_malformed_instances_json(tmp_path):
    write_coco(tmp_path)
    path = tmp_path / "annotations" / "instances_val2014.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="instances_val2014.json"):
        build_dataset("coco2014", "test", root=str(tmp_path))
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="instances_val2014.json"):
        build_dataset("coco2014", "test", root=str(tmp_path))


def test_missing_instances_file(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "annotations" / "instances_train2014.json").unlink()
    with pytest.raises(DataError, match="instances_train2014.json"):
        build_dataset("coco2014", "train", root=str(tmp_path))


def test_unknown_category_id(tmp_path):
    write_coco(tmp_path)
    path = tmp_path / "annotations" / "instances_val2014.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["category_id"] = 12  # 12 is not a COCO category
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="instances_val2014.json has category_id 12"):
        build_dataset("coco2014", "test", root=str(tmp_path))


def test_bad_list_files(tmp_path):
    write_coco(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"file_name": "x.jpg", "labels": [1]}')
    with pytest.raises(DataError, match="malformed JSON.*bad.json"):
        build_dataset("coco2014", "test", root=str(tmp_path), list_file={"test": str(bad)})
    bad.write_text(json.dumps([{"file_name": coco_file_name("val2014", 42), "labels": [80]}]))
    with pytest.raises(DataError, match=r"entry 0 .*bad.json has label 80"):
        build_dataset("coco2014", "test", root=str(tmp_path), list_file={"test": str(bad)})
    bad.write_text(json.dumps([{"file": "x.jpg"}]))
    with pytest.raises(DataError, match="entry 0 of list file .*bad.json"):
        build_dataset("coco2014", "test", root=str(tmp_path), list_file={"test": str(bad)})
    with pytest.raises(ConfigError, match="list_file"):
        build_dataset("coco2014", "test", root=str(tmp_path), list_file={"train": str(bad)})


def test_empty_split_names_the_file(tmp_path):
    write_coco(tmp_path, sample={"train2014": {1: []}, "val2014": {2: ["dog"]}})
    with pytest.raises(DataError, match=r"empty.*instances_train2014.json"):
        build_dataset("coco2014", "train", root=str(tmp_path))
    assert len(build_dataset("coco2014", "train", root=str(tmp_path), keep_empty=True)) == 1


def test_missing_and_corrupt_images(tmp_path):
    write_coco(tmp_path)
    missing = tmp_path / "val2014" / coco_file_name("val2014", 73)
    missing.unlink()
    with pytest.raises(DataError, match=missing.name):
        build_dataset("coco2014", "test", root=str(tmp_path))
    dataset = build_dataset("coco2014", "test", root=str(tmp_path), on_missing="skip")
    assert len(dataset) == 2 and dataset.missing == 1
    corrupt_file(tmp_path / "val2014" / coco_file_name("val2014", 42))
    i = [Path(p).name for p, _ in dataset.samples].index(coco_file_name("val2014", 42))
    with pytest.raises(DataError, match=coco_file_name("val2014", 42)):
        dataset[i]
