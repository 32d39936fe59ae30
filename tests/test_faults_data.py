"""Damaged data inside a real run: a list-file replica (tests/replicas.py) with a corrupt JPEG
and a missing image in train and a truncated JPEG in test, trained with the tiny model.

- ``skip``: the run completes and reports the counts (metrics.jsonl and the log); with
  ``data.verify_images`` the bad files are dropped before training instead.
- ``error``: the run stops before any model is built, naming the file (``on_missing`` always;
  ``on_bad_image`` with ``data.verify_images``); without the pre-flight check the error still
  names the file and points at ``data.verify_images``.
"""

from __future__ import annotations

import logging

import pytest

from engine_helpers import TINY_MODEL
from fault_helpers import run_cli, write_config  # noqa: F401 (fixture)
from mlkd.config import config_from_dict
from mlkd.engine import trainer
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from replicas import corrupt_file, truncate_file, write_list

CLASSES = ["cat", "dog", "person", "car"]


def names(k: int) -> list[str]:
    return [CLASSES[k % 4], CLASSES[(k + 1) % 4]][: 1 + k % 2]


def write_replica(root):
    write_list(root / "train.csv", [(f"img/train_{k:02d}.jpg", names(k)) for k in range(16)])
    write_list(root / "test.csv", [(f"img/test_{k}.jpg", names(k)) for k in range(6)])
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")


@pytest.fixture()
def replica(tmp_path):
    """16 train rows (one corrupt JPEG, one missing file) and 6 test rows (one truncated)."""
    root = tmp_path / "data"
    write_replica(root)
    bad = {
        "corrupt": corrupt_file(root / "img" / "train_05.jpg"),
        "truncated": truncate_file(root / "img" / "test_2.jpg", keep=0.3),
        "missing": root / "img" / "train_09.jpg",
    }
    bad["missing"].unlink()
    return {"root": root, "tmp": tmp_path, **{k: str(v) for k, v in bad.items()}}


def config(replica, on_bad_image="skip", on_missing="skip", verify=False, workers=0, epochs=2):
    root = replica["root"]
    return config_from_dict(
        {
            "run_dir": str(replica["tmp"] / "run"),
            "data": {
                "name": "list",
                "recipe": "none",
                "img_size": 32,
                "batch_size": 4,
                "num_workers": workers,
                "on_bad_image": on_bad_image,
                "verify_images": verify,
                "options": {
                    "train_file": str(root / "train.csv"),
                    "test_file": str(root / "test.csv"),
                    "classes_file": str(root / "classes.txt"),
                    "on_missing": on_missing,
                },
            },
            "model": dict(TINY_MODEL),
            "optim": {"lr": 1e-3, "epochs": epochs},
            "train": {"seed": 0, "device": "cpu", "progress": "off"},
        },
        "test",
    )


def test_skip_completes_and_counts_every_bad_image(replica, caplog):
    caplog.set_level(logging.INFO)
    record = fit(config(replica, workers=1))  # a worker process: counts travel with the batches
    records = read_jsonl(replica["tmp"] / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:  # 15 train images on disk, one undecodable: skipped in every epoch
        assert r["train"]["skipped_images"] == 1
        assert r["data"]["train"] == {"images": 15, "missing": 1, "unreadable": 0}
        assert r["data"]["test"] == {"images": 6, "missing": 0, "unreadable": 0}
    assert record["eval"]["skipped"] == 1 and record["eval"]["num_images"] == 5
    log = caplog.text
    assert "1 of 16 images listed in" in log and replica["missing"] in log
    assert "epoch 1: 1 unreadable image(s) skipped" in log and "epoch 2: 1 unreadable" in log
    assert "evaluation: 1 unreadable test image(s) skipped; the metrics cover the other 5" in log


def test_verify_images_drops_bad_files_before_training(replica, caplog):
    caplog.set_level(logging.INFO)
    record = fit(config(replica, verify=True, epochs=1))
    assert record["train"]["skipped_images"] == 0 and record["eval"]["skipped"] == 0
    assert record["data"]["train"] == {"images": 14, "missing": 1, "unreadable": 1}
    assert record["data"]["test"] == {"images": 5, "missing": 0, "unreadable": 1}
    assert record["eval"]["num_images"] == 5
    for path in (replica["corrupt"], replica["truncated"]):
        assert f"dropping unreadable image {path}" in caplog.text


@pytest.fixture()
def spies(monkeypatch):
    calls = {"model": 0}
    build = trainer.model_from_config

    def model_spy(*args, **kwargs):
        calls["model"] += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(trainer, "model_from_config", model_spy)
    return calls


@pytest.mark.parametrize(
    "policy, file, words",
    [
        ({"on_missing": "error"}, "missing", ["missing on disk", "on_missing: skip"]),
        ({"on_bad_image": "error", "verify": True}, "corrupt", ["cannot read image", "on_bad_image: skip"]),
    ],
)
def test_error_stops_before_any_model_is_built(replica, capsys, spies, policy, file, words):
    cfg_file = write_config(config(replica, **policy), replica["tmp"] / "exp.yaml")
    code, err = run_cli(["train", "-c", str(cfg_file)], capsys)
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    assert replica[file] in text and all(w in text for w in words), text
    assert spies["model"] == 0, "the error must come before any model is built"
    assert not (replica["tmp"] / "run" / "checkpoints").exists()


@pytest.mark.parametrize("workers", [0, 1])
def test_error_without_preflight_names_the_file_and_the_check(replica, capsys, workers):
    """Found when training reaches the file; from a loader worker too, still one line."""
    cfg_file = write_config(config(replica, on_bad_image="error", workers=workers), replica["tmp"] / "exp.yaml")
    code, err = run_cli(["train", "-c", str(cfg_file)], capsys)
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    assert replica["corrupt"] in text and "data.verify_images" in text and "Traceback" not in text
    assert not (replica["tmp"] / "run" / "checkpoints").exists()


def test_damaged_during_a_run_resumes_with_skip(tmp_path, capsys):
    """A file damaged on disk between epochs stops an ``error`` run in epoch 2, naming it; the
    run goes on from epoch 1's checkpoint with ``--resume data.on_bad_image=skip``."""
    replica = {"root": tmp_path / "data", "tmp": tmp_path}
    write_replica(replica["root"])
    cfg_file = write_config(config(replica, on_bad_image="error"), tmp_path / "exp.yaml")
    assert run_cli(["train", "-c", str(cfg_file), "optim.stop_epoch=1"], capsys)[0] == 0
    damaged = corrupt_file(replica["root"] / "img" / "train_07.jpg")
    code, err = run_cli(["train", "-c", str(cfg_file), "--resume"], capsys)
    assert code == 2 and str(damaged) in err and "\n" not in err.strip(), err
    code, err = run_cli(["train", "-c", str(cfg_file), "--resume", "data.on_bad_image=skip"], capsys)
    assert code == 0, err
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [(r["epoch"], r["train"]["skipped_images"]) for r in records] == [(1, 0), (2, 1)]
