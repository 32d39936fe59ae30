"""Tests of the ``coco_scenes`` dataset: COCO's real label sets drawn as colour emoji scenes."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mlkd.config import DataConfig
from mlkd.data import build_dataset, scenes, sprites
from mlkd.data.coco import COCO_CLASSES, alphabetical_to_category_order
from mlkd.data.coco_label_sets import ASSET, load_label_sets
from mlkd.data.loaders import build_datasets
from mlkd.data.scene_render import VISIBLE_FRACTION, render_scene
from mlkd.data.summary import summarize_dataset
from mlkd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the repository (or beside the worktrees' folder).
SHARED = next(
    (
        p / "shared/data/coco2014_val_label_sets.json"
        for p in (ROOT.parent, ROOT.parent.parent)
        if (p / "shared/data/coco2014_val_label_sets.json").is_file()
    ),
    None,
)
SMALL = dict(num_train=48, num_test=32, img_size=64, seed=5)
N_REAL = 40137


def build(split, tmp_path, **options):
    return build_dataset("coco_scenes", split, None, **{**SMALL, "cache_dir": tmp_path, **options})


def onehot(label_sets):
    out = np.zeros((len(label_sets), 80), np.uint8)
    for i, labels in enumerate(label_sets):
        for c in labels:
            out[i, c] = 1
    return out


def visible_fractions(masks):
    """Each instance's visible share of its own mask, from the masks alone [n]."""
    out = []
    for k, mask in enumerate(masks):
        above = masks[k + 1 :].any(axis=0) if k + 1 < len(masks) else np.zeros_like(mask)
        out.append((mask & ~above).sum() / mask.sum())
    return np.array(out)


def test_alphabetical_indices_map_to_category_id_order():
    mapping = alphabetical_to_category_order()
    assert mapping[49] == 0 and COCO_CLASSES[0] == "person"  # official 49 is person
    assert sorted(mapping) == list(range(80))
    assert all(COCO_CLASSES[mapping[j]] == name for j, name in enumerate(sorted(COCO_CLASSES)))


def test_shipped_label_sets_have_cocos_statistics():
    sets = load_label_sets()
    matrix = onehot(sets)
    assert len(sets) == N_REAL and matrix.sum(1).min() >= 1
    assert round(matrix.sum() / len(sets), 3) == 2.905
    assert matrix[:, COCO_CLASSES.index("person")].sum() == 21634
    assert (matrix.sum(0) > 0).all()


@pytest.mark.skipif(SHARED is None, reason="../shared/data (the source JSON) is absent")
def test_shipped_label_sets_equal_the_shared_json():
    entries = json.loads(SHARED.read_text())
    alphabetical = sorted(COCO_CLASSES)
    shipped = load_label_sets()
    assert len(entries) == len(shipped)
    for entry, labels in zip(entries, shipped):
        assert {alphabetical[j] for j in entry["labels"]} == {COCO_CLASSES[c] for c in labels}
        assert len(labels) == len(entry["labels"])
    with np.load(ASSET) as data:
        ids = data["image_ids"]
    assert [f"COCO_val2014_{i:012d}.jpg" for i in ids[:3]] == [e["file_name"] for e in entries[:3]]


def test_splits_at_maximum_sizes_use_every_real_label_set_once(tmp_path):
    opts = scenes.resolve_options(num_train=N_REAL - 1500, num_test=1500, cache_dir=tmp_path)
    train, test = scenes.split_indices("train", opts), scenes.split_indices("test", opts)
    assert not set(train) & set(test)
    sets = load_label_sets()
    assert Counter(sets[i] for i in [*train, *test]) == Counter(sets)
    matrix = onehot([sets[i] for i in [*train, *test]])
    assert round(matrix.sum(1).mean(), 3) == 2.905 and matrix[:, 0].sum() == 21634
    default = scenes.resolve_options(cache_dir=tmp_path)
    assert not set(scenes.split_indices("train", default)) & set(scenes.split_indices("test", default))
    with pytest.raises(ConfigError, match="num_train \\+ num_test = 40138 exceed"):
        scenes.resolve_options(num_train=N_REAL, num_test=1)


@pytest.mark.parametrize("split", ["train", "test"])
def test_targets_are_the_label_set_each_image_was_drawn_from(tmp_path, split):
    ds = build(split, tmp_path)
    sets = load_label_sets()
    assert ds.classes == COCO_CLASSES and ds.images.shape == (len(ds), 64, 64, 3)
    np.testing.assert_array_equal(ds.labels_matrix(), onehot([sets[i] for i in ds.source_index]))
    image, target, index = ds[3]
    assert image.shape == (3, 64, 64) and index == 3 and float(image.max()) <= 1.0
    for i in range(len(ds)):
        scene = ds.scene(i)
        assert set(scene.classes.tolist()) == set(sets[ds.source_index[i]])
        np.testing.assert_array_equal(scene.image, ds.images[i])  # the cache is what is drawn


def test_every_instance_keeps_the_visible_fraction(tmp_path):
    ds = build("train", tmp_path)
    occluded = 0
    for i in range(len(ds)):
        masks = ds.scene(i).masks
        assert masks.any(axis=(1, 2)).all()
        fractions = visible_fractions(masks)
        assert fractions.min() >= VISIBLE_FRACTION
        occluded += int((fractions < 1).sum())
    assert occluded > 0  # occlusion happens; the bound is not met vacuously
    # A crowded scene (15 classes, 32 px) still keeps every class, each >= half visible.
    sets = scenes.sprite_sets(["openmoji"])
    crowd = list(range(0, 75, 5))
    scene = render_scene(crowd, sets, 32, np.random.default_rng(0), 3, 30)
    assert set(scene.classes.tolist()) == set(crowd)
    assert visible_fractions(scene.masks).min() >= VISIBLE_FRACTION


def test_same_seed_gives_byte_identical_images(tmp_path):
    a, b = build("test", tmp_path / "a"), build("test", tmp_path / "b")
    assert a.images.tobytes() == b.images.tobytes()
    other = build("test", tmp_path / "c", seed=6)
    assert other.images.tobytes() != a.images.tobytes()
    np.testing.assert_array_equal(build("test", tmp_path / "d", num_test=8).images, a.images[:8])


def test_a_damaged_cache_is_regenerated(tmp_path, caplog):
    first = build("test", tmp_path)
    first.cache_path.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING):
        again = build("test", tmp_path)
    assert "corrupt" in caplog.text and str(first.cache_path) in caplog.text
    assert again.images.tobytes() == first.images.tobytes()


def test_openmoji_alone_when_noto_is_absent(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sprites, "NOTO_PATH", tmp_path / "missing.ttf")
    with caplog.at_level(logging.INFO, logger="mlkd.data.scenes"):
        ds = build("test", tmp_path)
    assert ds.options["fonts"] == ["openmoji"] and "fonts openmoji" in caplog.text
    assert (ds.scene(0).fonts == 0).all()
    with pytest.raises(ConfigError, match="emoji font 'noto' is not installed"):
        build("test", tmp_path, fonts=["noto"])


@pytest.mark.skipif(sprites.font_path("noto") is None, reason="fonts-noto-color-emoji absent")
def test_both_fonts_are_drawn_when_installed(tmp_path):
    ds = build("train", tmp_path)
    fonts = np.concatenate([ds.scene(i).fonts for i in range(len(ds))])
    assert ds.options["fonts"] == ["openmoji", "noto"] and set(fonts.tolist()) == {0, 1}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"colour": 1}, "unknown coco_scenes option\\(s\\) colour"),
        ({"img_size": 16}, "img_size must be an integer >= 32, got 16"),
        ({"num_test": "many"}, "num_test must be an integer"),
        ({"fonts": ["comic"]}, "fonts must be 'auto' or a list"),
    ],
)
def test_bad_options_name_the_key(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        build("test", tmp_path, **options)


def test_loader_draws_at_data_img_size_with_holdout_and_summary(tmp_path):
    cfg = DataConfig(
        name="coco_scenes",
        img_size=48,
        recipe="none",
        holdout=0.25,
        num_workers=0,
        options={"num_train": 40, "num_test": 20, "cache_dir": str(tmp_path)},
    )
    train, held = build_datasets(cfg)
    assert (len(train), len(held)) == (30, 10) and held.split == "holdout"
    assert train.dataset.images.shape[1:] == (48, 48, 3)
    assert not set(train.indices) & set(held.indices)
    summary = summarize_dataset(train)
    assert summary["classes"] == 80
    assert summary["labels_per_image"] == round(float(train.labels_matrix().sum(1).mean()), 4)
