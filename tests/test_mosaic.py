"""Tests of the embedded mosaic dataset and its sources (digits, and a fake IDX folder)."""

from __future__ import annotations

import gzip
import logging
import struct

import numpy as np
import pytest
import torch

from mlkd.data import build_dataset, dataset_names, mosaic, sources
from mlkd.data.batch import collate
from mlkd.errors import ConfigError, DataError

SMALL = dict(source="digits", num_train=200, num_test=120, seed=3)


def build(split, tmp_path, transform=None, **options):
    opts = {**SMALL, "cache_dir": tmp_path / "cache", **options}
    return build_dataset("mosaic", split, transform, **opts)


def cell_views(ds):
    """The dataset's images as cells [N, grid*grid, S, S] (row-major)."""
    n, g, s = len(ds), ds.grid, ds.cell_size
    return ds.images.reshape(n, g, s, g, s).transpose(0, 1, 3, 2, 4).reshape(n, g * g, s, s)


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_idx(tmp_path):
    """A tiny MNIST-format folder: train pixels lie in 1..100, test pixels in 150..250."""
    folder = tmp_path / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, n, low, high in (("train", 30, 1, 100), ("t10k", 12, 150, 250)):
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", rng.integers(low, high + 1, (n, 28, 28)), 2051)
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    return folder


@pytest.mark.parametrize("split", ["train", "test"])
def test_cells_and_labels_match_the_placed_source_items(tmp_path, split):
    ds = build(split, tmp_path)
    pool = sources.load_source("digits", split, cell_size=16)
    cells = cell_views(ds)
    assert ds.images.shape == (len(ds), 32, 32) and ds.images.dtype == np.uint8
    assert ds.cells.shape == (len(ds), 4)
    assert ds.classes == [str(d) for d in range(10)]
    expected = np.zeros((len(ds), 10), np.uint8)
    for i, row in enumerate(ds.cells):
        for c, item in enumerate(row):
            if item < 0:
                assert not cells[i, c].any(), "an empty cell must be black"
            else:
                np.testing.assert_array_equal(cells[i, c], pool.images[item])
                expected[i, pool.labels[item]] = 1
    np.testing.assert_array_equal(ds.labels_matrix(), expected)
    # Some mosaics hold one class twice: still a single positive, so labels < filled cells.
    assert ((ds.cells >= 0).sum(1) > ds.labels_matrix().sum(1)).any()


def test_digits_resize_is_bilinear_and_split_is_a_stratified_partition():
    from sklearn.datasets import load_digits

    digits = load_digits()
    train8 = sources.load_source("digits", "train", cell_size=8)
    test8 = sources.load_source("digits", "test", cell_size=8)
    assert (len(train8.labels), len(test8.labels)) == (1257, 540)
    # The two pools partition the 1797 images: together they are exactly the originals.
    both = np.concatenate([train8.images, test8.images]).reshape(1797, -1)
    originals = np.rint(digits.images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, originals))
    frac = np.bincount(test8.labels) / np.bincount(digits.target)
    assert np.all(np.abs(frac - 0.3) < 0.02), "the split must be stratified"
    train16 = sources.load_source("digits", "train", cell_size=16)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(train8.images[:, None]).float(), size=(16, 16), mode="bilinear", align_corners=False
    )
    diff = np.abs(train16.images.astype(int) - ref[:, 0].round().numpy().astype(int))
    assert diff.max() <= 1
    np.testing.assert_array_equal(train16.labels, train8.labels)


def test_train_and_test_mosaics_only_use_their_own_source_split(fake_idx, tmp_path):
    opts = dict(source="mnist", source_dir=str(fake_idx), num_train=80, num_test=80)
    train = build("train", tmp_path, **opts)
    test = build("test", tmp_path, **opts)
    assert train.classes == [str(d) for d in range(10)]
    assert train.images.max() <= 100 and test.images[test.images > 0].min() >= 150
    assert train.cells.max() < 30 and test.cells.max() < 12
    assert train.cells.max() >= 12, "the train pool must be the whole train split"
    # The digits pools: indices stay inside each split's pool.
    d_test = build("test", tmp_path)
    assert d_test.cells.max() < 540


def used_tiles(ds):
    """The bytes of every filled cell of ``ds`` (one entry per distinct item)."""
    cells = cell_views(ds)
    return {bytes(cells[i, c]) for i, c in zip(*np.nonzero(ds.cells >= 0))}


def test_holdout_makes_a_validation_split_from_held_out_train_items(fake_idx, tmp_path):
    opts = dict(source="mnist", source_dir=str(fake_idx), num_train=300, num_test=200, holdout=0.2)
    train = build("train", tmp_path, **opts)
    val = build("test", tmp_path, **opts)
    full = sources.load_source("mnist", "train", str(fake_idx))
    items = {bytes(image): label for image, label in zip(full.images, full.labels)}
    assert len(items) == 30, "the fixture's items must be distinct for this oracle"
    # The source's test split (pixels >= 150) is never read; both splits come from train items.
    assert val.images.max() <= 100 and train.images.max() <= 100
    seen_train, seen_val = used_tiles(train), used_tiles(val)
    assert seen_train <= set(items) and seen_val <= set(items)
    assert not seen_train & seen_val, "a held-out item appears in a train mosaic"
    assert len(seen_val) == 6 and len(seen_train) == 24, "0.2 of 30 items held out, all used"
    # Labels are those of the placed items; same options -> same split, another seed -> another.
    cells = cell_views(val)
    expected = np.zeros((len(val), 10), np.uint8)
    for i, c in zip(*np.nonzero(val.cells >= 0)):
        expected[i, items[bytes(cells[i, c])]] = 1
    np.testing.assert_array_equal(val.labels_matrix(), expected)
    np.testing.assert_array_equal(build("test", tmp_path, **opts).images, val.images)
    assert used_tiles(build("test", tmp_path, **{**opts, "seed": 1})) != seen_val


def test_holdout_zero_is_the_plain_split_and_bad_fractions_are_refused(tmp_path):
    np.testing.assert_array_equal(build("test", tmp_path, holdout=0).images, build("test", tmp_path / "other").images)
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(ConfigError, match="holdout"):
            build("train", tmp_path, holdout=bad)
    with pytest.raises(ConfigError, match="holdout=0.0001 leaves an empty split"):
        build("test", tmp_path, holdout=0.0001)


@pytest.mark.parametrize("grid,min_items,max_items", [(2, 1, 4), (2, 2, 3), (3, 0, 9)])
def test_number_of_filled_cells(tmp_path, grid, min_items, max_items):
    ds = build("train", tmp_path, grid=grid, min_items=min_items, max_items=max_items, cell_size=8)
    filled = (ds.cells >= 0).sum(1)
    assert ds.images.shape[1:] == (8 * grid, 8 * grid)
    assert filled.min() == min_items and filled.max() == max_items
    assert set(np.unique(filled)) == set(range(min_items, max_items + 1))
    # Filled cells are spread over all positions, not always the first ones.
    assert (ds.cells >= 0).mean(0).min() > 0.2


def test_deterministic_given_options_and_seed(tmp_path):
    a = build("train", tmp_path / "a")
    b = build("train", tmp_path / "b")
    assert a.images.tobytes() == b.images.tobytes()
    np.testing.assert_array_equal(a.labels_matrix(), b.labels_matrix())
    np.testing.assert_array_equal(a.cells, b.cells)
    other = build("train", tmp_path / "c", seed=4)
    assert not np.array_equal(a.cells, other.cells)
    # Train and test use different streams (same count, so a shared stream would match).
    train = build("train", tmp_path / "d", num_train=100, num_test=100)
    test = build("test", tmp_path / "d", num_train=100, num_test=100)
    assert not np.array_equal((train.cells >= 0).sum(1), (test.cells >= 0).sum(1))


def test_second_build_loads_the_cache(tmp_path, monkeypatch):
    first = build("train", tmp_path)
    assert first.cache_path.is_file() and first.cache_path.parent == tmp_path / "cache"
    assert not list((tmp_path / "cache").glob("*.tmp")), "no temp file may be left behind"

    def fail(*args, **kwargs):
        raise AssertionError("must not be called on a cache hit")

    monkeypatch.setattr(mosaic, "generate_mosaics", fail)
    monkeypatch.setattr(sources, "load_source", fail)
    second = build("train", tmp_path)
    assert second.images.tobytes() == first.images.tobytes()
    np.testing.assert_array_equal(second.cells, first.cells)
    assert second.classes == first.classes
    with pytest.raises(AssertionError, match="cache hit"):  # other options: another cache file
        build("train", tmp_path, seed=99)


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_corrupt_cache_is_regenerated(tmp_path, caplog, damage):
    first = build("train", tmp_path)
    path = first.cache_path
    data = path.read_bytes()
    path.write_bytes(b"not a zip file" if damage == "garbage" else data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="mlkd.data.mosaic"):
        again = build("train", tmp_path)
    assert "corrupt" in caplog.text and str(path) in caplog.text
    assert again.images.tobytes() == first.images.tobytes()
    assert path.read_bytes() == data, "the regenerated cache is written back"


def test_getitem_follows_the_batch_contract(tmp_path):
    ds = build("test", tmp_path)
    image, target, i = ds[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert target.shape == (10,) and target.dtype == torch.float32 and i == 5
    expected = torch.from_numpy(ds.images[5]).float() / 255
    for channel in image:
        torch.testing.assert_close(channel, expected)
    torch.testing.assert_close(target, torch.from_numpy(ds.labels_matrix()[5]).float())

    def to_tensor(pil):
        assert pil.mode == "RGB" and pil.size == (32, 32)
        return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255

    with_transform = build("test", tmp_path, transform=to_tensor)
    torch.testing.assert_close(with_transform[5][0], image)
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["images"].shape == (3, 3, 32, 32) and batch["skipped"] == 0


def test_idx_reader_on_a_fake_folder(fake_idx, tmp_path):
    assert sources.fashion_mnist_available(fake_idx)
    images = sources.read_idx(fake_idx / "train-images-idx3-ubyte.gz")
    labels = sources.read_idx(fake_idx / "train-labels-idx1-ubyte.gz")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(30) % 10)
    fashion = sources.load_source("fashion-mnist", "test", fake_idx)
    assert fashion.images.shape == (12, 28, 28) and fashion.images.min() >= 150
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    assert sources.load_source("mnist", "train", fake_idx, cell_size=14).images.shape == (30, 14, 14)
    # Uncompressed IDX files are read too.
    raw = tmp_path / "raw-images"
    raw.write_bytes(gzip.decompress((fake_idx / "t10k-images-idx3-ubyte.gz").read_bytes()))
    np.testing.assert_array_equal(sources.read_idx(raw), fashion.images)
    bad = tmp_path / "bad.gz"
    write_idx(bad, np.zeros((2, 3)), 0x12345678)
    with pytest.raises(DataError, match="not an IDX file"):
        sources.read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(struct.pack(">IIII", 2051, 5, 28, 28) + bytes(100))
    with pytest.raises(DataError, match="truncated"):
        sources.read_idx(short)


def test_missing_source_folder_names_it_and_the_fix(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError) as err:
        build("train", tmp_path, source="fashion-mnist", source_dir=str(missing))
    message = str(err.value)
    assert str(missing) in message
    assert "apt-get install dataset-fashion-mnist" in message and "source: digits" in message
    (tmp_path / "empty").mkdir()
    assert not sources.fashion_mnist_available(missing)
    assert not sources.fashion_mnist_available(tmp_path / "empty")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        sources.load_source("mnist", "train", tmp_path / "empty")


def test_options_are_validated(tmp_path):
    assert "mosaic" in dataset_names()
    with pytest.raises(ConfigError, match="grid_size"):
        build("train", tmp_path, grid_size=3)
    with pytest.raises(ConfigError, match="max_items"):
        build("train", tmp_path, max_items=5)
    with pytest.raises(ConfigError, match="min_items"):
        build("train", tmp_path, min_items=3, max_items=2)
    with pytest.raises(ConfigError, match="source"):
        build("train", tmp_path, source="cifar")
    with pytest.raises(ConfigError, match="split"):
        build("val", tmp_path)
    assert len(build("train", tmp_path, on_bad_image="skip")) == 200


def test_label_stats():
    labels = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], np.uint8)
    stats = mosaic.label_stats(labels, ["a", "b", "c"])
    assert stats["labels_per_image"] == pytest.approx(5 / 3)
    assert (stats["min_labels"], stats["max_labels"], stats["no_label_images"]) == (0, 3, 1)
    assert stats["class_counts"] == {"a": 2, "b": 1, "c": 2}
