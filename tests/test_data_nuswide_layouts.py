"""NUS-WIDE as NUS distributes it (ConceptsList/, Groundtruth/TrainTestLabels/, ImageList/ with
Windows paths and CRLF), as ASL / ML-Decoder users have it (nus_wid_data.csv), and with flat
image folders; every image's targets and the class order of each layout are checked."""

import logging
from pathlib import Path

import pytest

from mlkd.data import build_dataset
from mlkd.errors import DataError
from replicas import NUS_CONCEPTS, NUS_SAMPLE
from replicas_layouts import NUS_CONCEPTS81, nus_image_path, write_nus_asl, write_nuswide_distributed

PARTS = {"train": "Train", "test": "Test"}
# Rows whose concepts are among the real 81 (the ASL csv's class order is the sorted 81).
NUS81_SAMPLE = {
    "Train": [
        ("actor", "0001_2124494179.jpg", ["sky", "clouds"]),
        ("airport", "0002_1234567890.jpg", ["airport", "plane", "sky"]),
        ("zebra", "0003_2222222222.jpg", ["zebra", "animal", "grass"]),
    ],
    "Test": [("water", "0001_5555555555.jpg", ["water", "beach"]), ("map", "0002_6666666666.jpg", ["map"])],
}


def check(dataset, root: Path, layout: str, sample, part: str, classes) -> None:
    rows = sample[part]
    assert dataset.classes == list(classes)
    assert len(dataset) == len(rows)
    for i, ((path, _labels), (folder, name, concepts)) in enumerate(zip(dataset.samples, rows)):
        assert Path(path) == nus_image_path(root, layout, folder, name)
        assert dataset.target(i).tolist() == [float(c in concepts) for c in classes]


@pytest.mark.parametrize("layout", ["concept", "flat", "flat_id"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_distributed_layout_image_by_image(tmp_path, split, layout):
    write_nuswide_distributed(tmp_path, NUS_CONCEPTS, NUS_SAMPLE, layout=layout)
    dataset = build_dataset("nuswide", split, root=str(tmp_path))
    assert dataset.missing == 0
    check(dataset, tmp_path, layout, NUS_SAMPLE, PARTS[split], NUS_CONCEPTS)  # the file's order


def test_distributed_layout_with_the_81_concepts(tmp_path):
    write_nuswide_distributed(tmp_path, NUS_CONCEPTS81, NUS81_SAMPLE)
    dataset = build_dataset("nuswide", "train", root=str(tmp_path))
    check(dataset, tmp_path, "concept", NUS81_SAMPLE, "Train", NUS_CONCEPTS81)
    assert len(dataset.classes) == 81


def test_missing_images_of_a_flat_folder_are_skipped_and_counted(tmp_path, caplog):
    write_nuswide_distributed(tmp_path, NUS_CONCEPTS, NUS_SAMPLE, layout="flat", missing=["0002_1234567890.jpg"])
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset("nuswide", "train", root=str(tmp_path))
    assert dataset.missing == 1 and dataset.missing_files == [str(tmp_path / "images" / "0002_1234567890.jpg")]
    assert len(dataset) == 4 and "1 of 5 images" in caplog.text


@pytest.mark.parametrize("prefix, layout", [("images/", "flat"), ("", "flat"), ("", "flat_id")])
@pytest.mark.parametrize("split", ["train", "test"])
def test_asl_csv_image_by_image(tmp_path, split, prefix, layout):
    write_nus_asl(tmp_path, NUS81_SAMPLE, prefix=prefix, layout=layout)
    names = sorted({c for part in NUS81_SAMPLE.values() for *_, cs in part for c in cs})
    dataset = build_dataset("nuswide", split, root=str(tmp_path))
    check(dataset, tmp_path, layout, NUS81_SAMPLE, PARTS[split], names)
    assert dataset.source == str(tmp_path / "nus_wid_data.csv")


def test_asl_csv_takes_the_concept_list_order_when_present(tmp_path):
    write_nus_asl(tmp_path, NUS81_SAMPLE)
    (tmp_path / "ConceptsList").mkdir()
    (tmp_path / "ConceptsList" / "Concepts81.txt").write_text("".join(f"{c}\r\n" for c in NUS_CONCEPTS81), newline="")
    dataset = build_dataset("nuswide", "test", root=str(tmp_path), csv=str(tmp_path / "nus_wid_data.csv"))
    assert dataset.classes == NUS_CONCEPTS81 == sorted(NUS_CONCEPTS81)
    check(dataset, tmp_path, "flat", NUS81_SAMPLE, "Test", NUS_CONCEPTS81)


def test_asl_csv_unknown_concept_is_named(tmp_path):
    write_nus_asl(tmp_path, NUS81_SAMPLE)
    (tmp_path / "Concepts81.txt").write_text("sky\nclouds\n")
    with pytest.raises(DataError, match=r"nus_wid_data.csv line 3: unknown concept 'airport'"):
        build_dataset("nuswide", "train", root=str(tmp_path), csv=str(tmp_path / "nus_wid_data.csv"))


def test_an_empty_root_names_every_layout(tmp_path):
    with pytest.raises(DataError) as err:
        build_dataset("nuswide", "train", root=str(tmp_path))
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / "ConceptsList" / "Concepts81.txt") in text
    assert "nus_wid_data.csv" in text and "csv:" in text and "Groundtruth/" in text


def test_a_missing_label_file_is_named(tmp_path):
    write_nuswide_distributed(tmp_path, NUS_CONCEPTS, NUS_SAMPLE)
    gone = tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_water_Test.txt"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        build_dataset("nuswide", "test", root=str(tmp_path))
