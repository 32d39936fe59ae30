"""Run folders as a requeue loop and colleagues meet them: damaged, unreadable, half-rotated
or shared files. A run's history is never overwritten by a fresh start, an intact file is
never called corrupt, and files are readable by whoever the umask lets read them.
"""

from __future__ import annotations

import os
import shutil

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, run_cli, write_config

DATA = {"options": {"source": "digits", "num_train": 64, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}


def config(run_dir, **optim):
    return tiny_config(run_dir, CACHE, epochs=3, data=DATA, optim=optim)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A real run stopped after epoch 2 of 3 (last.pt = epoch 2, prev.pt = epoch 1)."""
    from mlkd.engine.trainer import fit

    run = tmp_path_factory.mktemp("files") / "part"
    fit(config(run, stop_epoch=2))
    return run


def copy_run(stopped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    return run, write_config(config(run), tmp_path / "exp.yaml")


def assert_error(code, err, *needles):
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    for needle in needles:
        assert needle in text, text


def test_a_requeue_after_both_checkpoints_failed_never_restarts_from_scratch(stopped, tmp_path, capsys):
    run, cfg_file = copy_run(stopped, tmp_path)
    for name in ("last.pt", "prev.pt"):
        path = run / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    metrics = (run / "metrics.jsonl").read_bytes()
    assert_error(*run_cli(["train", "-c", str(cfg_file), "--resume"], capsys), "no readable checkpoint")
    assert (run / "checkpoints" / "last.pt.corrupt").exists() and (run / "checkpoints" / "prev.pt.corrupt").exists()
    for argv in (["train", "-c", str(cfg_file), "--resume"], ["train", "-c", str(cfg_file)]):  # the requeue, a new run
        assert_error(*run_cli(argv, capsys), f"run_dir {run} already holds a run", "last.pt.corrupt",
                     "metrics.jsonl", "nothing to resume from", f"mv {run} {run}.old")
    assert (run / "metrics.jsonl").read_bytes() == metrics
    assert not (run / "checkpoints" / "last.pt").exists()


def test_a_folder_holding_another_config_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(open(write_config(config(run), tmp_path / "old.yaml")).read()
                                     .replace("lr: 0.001", "lr: 0.01"))
    before = (run / "config.yaml").read_bytes()
    cfg_file = write_config(config(run), tmp_path / "exp.yaml")
    assert_error(*run_cli(["train", "-c", str(cfg_file), "--resume"], capsys), "config.yaml of another config",
                 "optim.lr")
    assert (run / "config.yaml").read_bytes() == before
