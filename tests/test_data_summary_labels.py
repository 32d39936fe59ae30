"""``mlkd data summary``: the labels-only mode (no image on disk), the per-batch statistics, and
the unreadable files that ``data.verify_images`` drops, counted and named."""

import shutil

import numpy as np
import pytest

from fault_helpers import run_cli
from mlkd.config import load_config
from mlkd.data.summary import summarize_config
from replicas import corrupt_file, write_classes
from replicas_layouts import (
    COCO2017_SAMPLE,
    NUS_CONCEPTS81,
    VOC2012_SAMPLE,
    write_coco2017,
    write_nus_asl,
    write_txt_list,
    write_voc2012,
)
from test_data_nuswide_layouts import NUS81_SAMPLE


def config(tmp_path, name: str, options: dict, batch_size: int = 4, **data) -> str:
    lines = [f"data:\n  name: {name}\n  batch_size: {batch_size}\n  options:"]
    lines += [f"    {k}: {v}" for k, v in options.items()]
    lines += [f"  {k}: {v}" for k, v in data.items()]
    path = tmp_path / "exp.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_coco_labels_without_images(tmp_path, capsys):
    root = write_coco2017(tmp_path / "coco")
    for subset in ("train2017", "val2017"):
        shutil.rmtree(root / subset)  # the annotations only, as downloaded first
    cfg = config(tmp_path, "coco2017", {"root": str(root)})
    code, err = run_cli(["data", "summary", cfg], capsys)
    assert code == 2 and "\n" not in err.strip() and "missing on disk" in err
    assert run_cli(["data", "summary", cfg, "--labels-only"], capsys) == (0, "")
    summary = summarize_config(load_config(cfg), labels_only=True)
    train = summary["train"]
    want = {}
    for names in COCO2017_SAMPLE["train2017"].values():
        for name in {n.lstrip("*") for n in names}:
            want[name] = want.get(name, 0) + 1
    assert {c: n for c, n in train["class_counts"].items() if n} == want
    assert train["images"] == 4 and summary["test"]["images"] == 3
    assert train["labels_per_image_counts"] == {2: 2, 3: 2}
    assert train["files_checked"] is False


def test_labels_only_prints_the_tables(tmp_path, capsys):
    root = write_nus_asl(tmp_path / "nus", NUS81_SAMPLE)
    shutil.rmtree(root / "images")
    cfg = config(tmp_path, "nuswide", {"root": str(root)}, batch_size=2)
    from mlkd.cli import main

    assert main(["data", "summary", cfg, "--labels-only"]) == 0
    out = capsys.readouterr().out
    assert "| train | 3 | 10 | 2.667 | 3 | 0 | not checked | not checked |" in out
    assert "| test | 2 | 10 | 1.500 | 2 | 0 | not checked | not checked |" in out
    assert "Labels only: the image files were not looked at." in out
    assert "| sky | 2 | 0 | 1.3" in out  # in 2 of the 3 train images: ~ 2 * 2/3 per batch of 2
    assert "| 3 | 2 | 0 |" in out  # labels per image: two train images with 3 labels
    assert "## Batches of 2 (train split" in out
    per_class = out.split("## Images per class")[1].split("## Batches")[0]
    assert len([c for c in NUS_CONCEPTS81 if f"\n| {c} |" in per_class]) == 10


def test_voc_labels_only_needs_no_jpegs(tmp_path):
    folder = write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    shutil.rmtree(folder / "JPEGImages")
    cfg = load_config(config(tmp_path, "voc2012", {"root": str(folder)}))
    summary = summarize_config(cfg, labels_only=True)
    assert summary["train"]["images"] == len(VOC2012_SAMPLE["train"])
    assert summary["test"]["class_counts"]["chair"] == 1


def test_per_batch_figures_against_whole_epochs(tmp_path):
    """10 images, B=5: 500 batches are 250 whole epochs, so a class with n positives averages
    exactly 5 n / 10 per batch; all-positive classes always reach 3, rare ones never."""
    classes = ["all", "half", "two", "none"]
    rows = [(f"{k}.jpg", ["all"] + (["half"] if k % 2 else []) + (["two"] if k < 2 else [])) for k in range(10)]
    listing = write_txt_list(tmp_path / "train.txt", rows, images=False)
    cfg = load_config(
        config(
            tmp_path,
            "list",
            {
                "train_file": str(listing),
                "test_file": str(listing),
                "format": "txt",
                "classes_file": str(write_classes(tmp_path / "c.txt", classes)),
            },
            batch_size=5,
        )
    )
    batches = summarize_config(cfg, labels_only=True)["train"]["batches"]
    per_class = batches["per_class"]
    assert [per_class[c]["positives"] for c in classes] == [5.0, 2.5, 1.0, 0.0]
    assert per_class["all"]["batches_with_3plus"] == 1.0
    assert per_class["two"]["batches_with_3plus"] == 0.0 == per_class["none"]["batches_with_3plus"]
    assert 0.0 < per_class["half"]["batches_with_3plus"] < 1.0
    assert batches["positives_per_class"] == pytest.approx(np.mean([5, 2.5, 1, 0]))
    assert batches["batch_size"] == 5
    bigger = summarize_config(cfg, labels_only=True, batch_size=20)["train"]["batches"]
    assert bigger["note"] == "needs at least 20 images"


def test_verify_images_drops_are_counted_and_named(tmp_path, capsys):
    rows = [(f"img/{k}.jpg", ["a"] if k % 2 else ["b"]) for k in range(4)]
    listing = write_txt_list(tmp_path / "train.txt", rows)
    corrupt_file(tmp_path / "img" / "1.jpg")
    cfg = config(
        tmp_path,
        "list",
        {"train_file": str(listing), "test_file": str(listing), "format": "txt"},
        on_bad_image="skip",
        verify_images="true",
        num_workers=1,
    )
    from mlkd.cli import main

    assert main(["data", "summary", cfg]) == 0
    out = capsys.readouterr().out
    assert "| train | 3 | 2 | 1.000 | 1 | 0 | 0 | 1 |" in out
    assert f"Unreadable files (skipped) in train (first 1): `{tmp_path / 'img' / '1.jpg'}`" in out


def test_a_bad_batch_size_is_one_line(tmp_path, capsys):
    listing = write_txt_list(tmp_path / "t.txt", [("a.jpg", ["x"])], images=False)
    cfg = config(tmp_path, "list", {"train_file": str(listing), "test_file": str(listing), "format": "txt"})
    code, err = run_cli(["data", "summary", cfg, "--labels-only", "--batch-size", "0"], capsys)
    assert code == 2 and "--batch-size 0" in err and "\n" not in err.strip()
