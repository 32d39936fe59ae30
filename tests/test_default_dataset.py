"""The default dataset on a fresh ``pip install``: an empty config trains without the Debian
package ``dataset-fashion-mnist`` and without scikit-learn (the mosaics fall back to the digits
packaged with mlkd, and say so), and a machine with Fashion-MNIST keeps its runs unchanged."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from mlkd.cli import main
from mlkd.data import sources
from mlkd.data.mosaic import cache_key, resolve_options, source_identity
from mlkd.fileio import sha256_file


@pytest.fixture
def fresh_install(tmp_path, monkeypatch):
    """No Fashion-MNIST files where the Debian package puts them, no scikit-learn, an empty
    mlkd cache (``MLKD_CACHE``, which the mosaics honour)."""
    monkeypatch.setattr(sources, "DEFAULT_SOURCE_DIR", str(tmp_path / "no-fashion-mnist"))
    monkeypatch.setattr(sources, "_ANNOUNCED", set(), raising=False)
    for module in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ModuleNotFoundError
    monkeypatch.setenv("MLKD_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_an_empty_config_trains_on_a_fresh_install(fresh_install, capsys, caplog):
    empty = fresh_install / "empty.yaml"
    empty.write_text("")
    run = fresh_install / "run"
    size = [  # the defaults train ResNet-18 at 224 px for 80 epochs: only the sizes are made small
        f"run_dir={run}",
        "data.options.num_train=48",
        "data.options.num_test=24",
        "data.img_size=32",
        "data.batch_size=16",
        "data.num_workers=0",
        "model.name=tiny",
        "model.embed_dim=16",
        "model.ffn_dim=32",
        "model.num_heads=2",
        "optim.epochs=1",
        "train.device=cpu",
        "train.progress=off",
    ]
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="mlkd"):
        code = main(["train", "-c", str(empty), *size])
    err = capsys.readouterr().err
    assert code == 0, err
    config = (run / "config.yaml").read_text()
    assert "name: mosaic" in config and "options:\n    num_train: 48\n    num_test: 24\n" in config
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(records[-1]["eval"]["thr@0.5"]["mAP"])
    said = [r.getMessage() for r in caplog.records if r.name == "mlkd.data.sources"]
    assert len(said) == 1 and "Fashion-MNIST is not installed" in said[0], said
    assert "digits packaged with mlkd" in said[0] and "apt-get install dataset-fashion-mnist" in said[0]


def test_with_fashion_mnist_installed_the_default_is_unchanged(fresh_install, monkeypatch):
    folder = fresh_install / "fashion-mnist"
    folder.mkdir()
    for split in ("train", "t10k"):  # availability is the presence of the four files
        for kind in ("images-idx3", "labels-idx1"):
            (folder / f"{split}-{kind}-ubyte.gz").touch()
    monkeypatch.setattr(sources, "DEFAULT_SOURCE_DIR", str(folder))
    default = resolve_options()
    explicit = resolve_options(source="fashion-mnist")
    assert default == explicit and default["source"] == "fashion-mnist" and default["cell_size"] == 28
    assert cache_key(default, "train") == cache_key(explicit, "train")  # the same cached mosaics
    # a source_dir names the IDX source: a folder without its files stays an error, never the digits
    assert resolve_options(source_dir=str(fresh_install / "elsewhere"))["source"] == "fashion-mnist"
    monkeypatch.setattr(sources, "DEFAULT_SOURCE_DIR", str(fresh_install / "none"))
    assert resolve_options()["source"] == "digits" and resolve_options()["cell_size"] == 16
    assert resolve_options(source="auto") == resolve_options(source="digits")


def test_the_packaged_digits_are_scikit_learns():
    # the mosaics cached from them are keyed by the file (not by scikit-learn's release)
    digest = sha256_file(sources.DIGITS_ASSET)
    assert source_identity(resolve_options(source="digits"), "test") == {"digits.npz": digest}
    pytest.importorskip("sklearn")
    derived = sources.derive_digits_splits()
    for split, count in (("train", 1257), ("test", 540)):
        images, labels = sources.load_digits_split(split)
        assert images.shape == (count, 8, 8) and images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, derived[f"{split}_images"])
        np.testing.assert_array_equal(labels, derived[f"{split}_labels"])
