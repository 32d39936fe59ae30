"""Damaged checkpoints on disk: a clear CheckpointError naming the file, and ``--resume`` falls
back to ``prev.pt`` and still ends with the weights of an uninterrupted run (bit-identical, CPU).
"""

from __future__ import annotations

import logging
import resource
import shutil
import signal

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, assert_same_tensors, run_cli, write_config
from mlkd.engine.checkpoint import load_checkpoint, load_latest
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from mlkd.errors import CheckpointError

DATA = {"options": {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}


def config(run_dir, **optim):
    return tiny_config(run_dir, CACHE, epochs=3, data=DATA, optim=optim)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 3-epoch run, and a run stopped after epoch 2 (last = 2, prev = 1)."""
    root = tmp_path_factory.mktemp("ckpt")
    fit(config(root / "full"))
    fit(config(root / "part", stop_epoch=2))
    return root


def damaged_copy(runs, tmp_path, damage):
    """A copy of the stopped run whose last.pt is damaged by ``damage``."""
    run = tmp_path / "run"
    shutil.copytree(runs / "part", run)
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    if damage == "truncated":
        last.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "bit flip in a tensor":
        state = load_checkpoint(last)
        assert state["epoch"] == 2
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x08  # inside the stored tensors: torch.load reads it silently
        last.write_bytes(bytes(flipped))
    elif damage == "garbage":
        last.write_bytes(b"\x00" * 64 + data[64:128])
    return run


@pytest.mark.parametrize("damage", ["truncated", "empty", "bit flip in a tensor", "garbage"])
def test_damaged_checkpoint_is_a_clear_error_naming_the_file(runs, tmp_path, damage):
    run = damaged_copy(runs, tmp_path, damage)
    last = run / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(last)
    message = str(err.value)
    assert str(last) in message and "\n" not in message
    assert ("corrupt" in message) or ("unreadable" in message)
    # load_latest (what --resume and sweeps use) falls back to the good previous checkpoint.
    assert load_latest(run / "checkpoints")["epoch"] == 1
    assert last.exists(), "reading must not rename anything unless asked to"


@pytest.mark.parametrize("damage", ["truncated", "bit flip in a tensor"])
def test_resume_falls_back_to_prev_and_ends_like_an_uninterrupted_run(runs, tmp_path, damage, capsys, caplog):
    run = damaged_copy(runs, tmp_path, damage)
    stale = run / "checkpoints" / ".last.pt.killed.tmp"  # what a process killed while saving leaves
    stale.write_bytes(b"half a checkpoint")
    cfg_file = write_config(config(run), tmp_path / "exp.yaml")
    caplog.set_level(logging.INFO)
    code, err = run_cli(["train", "-c", str(cfg_file), "--resume"], capsys)
    assert code == 0, err
    log = caplog.text
    assert "last.pt" in log and "trying the previous checkpoint" in log
    assert f"from {run / 'checkpoints' / 'prev.pt'} after epoch 1" in log
    # The damaged file is kept aside, never rotated over the good prev.pt.
    assert (run / "checkpoints" / "last.pt.corrupt").exists() and not stale.exists()
    final = load_checkpoint(run / "checkpoints" / "last.pt")
    reference = load_checkpoint(runs / "full" / "checkpoints" / "last.pt")
    assert final["epoch"] == 3 and load_checkpoint(run / "checkpoints" / "prev.pt")["epoch"] == 2
    assert_same_tensors(final["model"], reference["model"])
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert read_jsonl(run / "metrics.jsonl")[-1]["eval"] == read_jsonl(runs / "full" / "metrics.jsonl")[-1]["eval"]


def test_resume_with_no_readable_checkpoint_names_both_files(runs, tmp_path, capsys):
    run = damaged_copy(runs, tmp_path, "truncated")
    (run / "checkpoints" / "prev.pt").write_bytes(b"")
    cfg_file = write_config(config(run), tmp_path / "exp.yaml")
    code, err = run_cli(["train", "-c", str(cfg_file), "--resume"], capsys)
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    assert "no readable checkpoint" in text and "last.pt" in text and "prev.pt" in text


def test_a_new_run_never_overwrites_an_existing_one(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs / "part", run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    cfg_file = write_config(config(run), tmp_path / "exp.yaml")
    code, err = run_cli(["train", "-c", str(cfg_file)], capsys)  # forgot --resume
    assert code == 2 and "--resume" in err and str(run) in err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


@pytest.mark.skipif(signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN, reason="needs SIGXFSZ ignored (CPython does)")
def test_disk_full_while_saving_keeps_both_checkpoints(runs, tmp_path, capsys):
    """A real short write: the file-size limit (RLIMIT_FSIZE) makes the kernel refuse the
    checkpoint's bytes (EFBIG), as a full disk would (ENOSPC)."""
    run = tmp_path / "run"
    shutil.copytree(runs / "part", run)
    folder = run / "checkpoints"
    before = {name: (folder / name).read_bytes() for name in ("last.pt", "prev.pt")}
    cfg_file = write_config(config(run), tmp_path / "exp.yaml")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))  # a checkpoint is ~4.7 MB
    try:
        code, err = run_cli(["train", "-c", str(cfg_file), "--resume"], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    assert f"cannot write checkpoint {folder / 'last.pt'}" in text and "intact" in text
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert not list(folder.glob(".*.tmp"))
    code, err = run_cli(["train", "-c", str(cfg_file), "--resume"], capsys)  # space again
    assert code == 0, err
    assert_same_tensors(
        load_checkpoint(folder / "last.pt")["model"],
        load_checkpoint(runs / "full" / "checkpoints" / "last.pt")["model"],
    )


def test_resume_on_a_dataset_with_other_classes_is_refused(tmp_path, monkeypatch):
    """A run folder resumed where the same config builds a dataset with other class names (the
    default mosaics read Fashion-MNIST on one machine and the packaged digits on another: 10
    classes each) stops naming the checkpoint, instead of training on under the old names."""
    from mlkd.data.mosaic import MosaicDataset

    fit(tiny_config(tmp_path / "run", CACHE, epochs=2, optim={"stop_epoch": 1}))
    init = MosaicDataset.__init__

    def renamed(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.classes = [f"class {c}" for c in self.classes]

    monkeypatch.setattr(MosaicDataset, "__init__", renamed)
    with pytest.raises(
        CheckpointError, match=r"--resume: the checkpoint .*last\.pt was trained on 10 classes.*different"
    ):
        fit(tiny_config(tmp_path / "run", CACHE, epochs=2), resume=True)
