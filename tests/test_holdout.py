"""data.holdout: a validation split of the training images for any dataset (the test split is
never read), its index contract, and a run trained and evaluated on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_helpers import tiny_config
from mlkd.config import DataConfig, config_from_dict
from mlkd.data import build_dataset
from mlkd.data.loaders import build_datasets
from mlkd.data.transforms import build_transform
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from mlkd.errors import ConfigError, DataError
from replicas import write_classes, write_list

ROWS = [(f"img/{k}.jpg", [("cat", "dog", "person")[k % 3]] + (["dog"] if k % 4 == 0 else [])) for k in range(20)]


def list_config(tmp_path, holdout, recipe="official"):
    train = write_list(tmp_path / "train.csv", ROWS)
    classes = write_classes(tmp_path / "classes.txt", ["cat", "dog", "person"])
    # No test_file: building the test split would fail, so a passing run never read it.
    return DataConfig(
        name="list",
        recipe=recipe,
        img_size=32,
        holdout=holdout,
        num_workers=0,
        options={"train_file": str(train), "classes_file": str(classes)},
    )


def test_holdout_splits_the_train_images_and_never_reads_the_test_split(tmp_path):
    cfg = list_config(tmp_path, 0.25)
    train, held = build_datasets(cfg)
    assert (len(train), len(held)) == (15, 5) and train.classes == held.classes == ["cat", "dog", "person"]
    assert not set(train.indices) & set(held.indices)
    assert sorted([*train.indices, *held.indices]) == list(range(20))
    full = build_dataset("list", "train", build_transform("official", 32, False), **cfg.options)
    for position in range(len(held)):  # the held-out side: eval transform, positions as index
        image, target, index = held[position]
        ref_image, ref_target, _ = full[int(held.indices[position])]
        assert index == position
        torch.testing.assert_close(image, ref_image, rtol=0, atol=0)
        torch.testing.assert_close(target, ref_target)
    np.testing.assert_array_equal(held.labels_matrix(), full.labels_matrix()[held.indices])
    # The training side keeps the augmenting transform (RandAugment, Cutout): not the eval one.
    assert train.transform is not held.transform
    assert type(train.dataset.transform).__name__ == type(build_transform("official", 32, True)).__name__
    # The same split for every run: another build gives the same positions.
    assert build_datasets(cfg)[1].indices.tolist() == held.indices.tolist()
    with pytest.raises(ConfigError, match="test_file is required"):
        build_datasets(list_config(tmp_path, 0.0))


def test_holdout_values_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="holdout"):
        config_from_dict({"data": {"holdout": 1.0}}, "test")
    with pytest.raises(DataError, match="data.holdout=0.01 leaves an empty split of the 20 training images"):
        build_datasets(list_config(tmp_path, 0.01))


def test_a_run_on_the_holdout_split_evaluates_the_held_out_images(tmp_path):
    data = {
        "holdout": 0.25,
        "options": {
            "source": "digits",
            "num_train": 128,
            "num_test": 67,
            "seed": 0,
            "cache_dir": str(tmp_path / "cache"),
        },
    }
    fit(tiny_config(tmp_path / "teacher", tmp_path / "cache", epochs=1, data=data))
    teacher = str(tmp_path / "teacher")
    record = fit(
        tiny_config(
            tmp_path / "l2d",
            tmp_path / "cache",
            method="l2d",
            teacher=teacher,
            epochs=1,
            data=data,
            distill={"cache": "auto"},
        )
    )
    assert record["eval"]["num_images"] == 32  # 25% of the 128 training mosaics
    assert read_jsonl(tmp_path / "l2d" / "metrics.jsonl")[-1]["data"]["train"]["images"] == 96


def test_data_summary_names_the_validation_split(tmp_path, capsys):
    from mlkd.cli import main as cli_main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {name: mosaic, recipe: none, img_size: 32, holdout: 0.2, "
        f"options: {{source: digits, num_train: 200, num_test: 50, cache_dir: {tmp_path / 'cache'}}}}}\n"
    )
    assert cli_main(["data", "summary", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "| train | 160 |" in out and "| holdout (validation) | 40 |" in out
