"""Hostile checkpoints: loading a file never executes code from it.

A checkpoint is a pickle; one crafted with ``__reduce__`` would run a command the moment it is
unpickled. Every path that reads a checkpoint (``mlkd eval FILE``, ``--resume``,
``distill.teacher``, ``mlkd analyze``) must refuse it with a one-line error, and the command
(here: one that creates a marker file) must never run.
"""

from __future__ import annotations

import os
import shlex
import shutil

import numpy as np
import pytest
import torch

from engine_helpers import tiny_config
from fault_helpers import CACHE, run_cli, write_config
from mlkd.engine.checkpoint import load_checkpoint, load_latest, save_rotating
from mlkd.errors import CheckpointError

DATA = {"options": {"source": "digits", "num_train": 64, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}


class Payload:
    """Unpickled, it runs ``touch MARKER`` (what an attacker's ``os.system`` would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A real run stopped after epoch 1 of 2 (its checkpoint is the template of the hostile file)."""
    from mlkd.engine.trainer import fit

    run = tmp_path_factory.mktemp("security") / "teacher"
    fit(tiny_config(run, CACHE, epochs=2, data=DATA, optim={"stop_epoch": 1}))
    return run


def hostile_copy(teacher, tmp_path):
    """A copy of the teacher's run folder whose last.pt carries the payload; (run, file, marker)."""
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    shutil.copytree(teacher, run)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["metrics"] = {"x": Payload(marker)}
    torch.save(state, last)
    return run, last, marker


def assert_refused(code, err, path):
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    assert f"checkpoint {path} refused" in text and "system" in text, text


def test_load_checkpoint_refuses_code_and_runs_nothing(teacher, tmp_path):
    run, last, marker = hostile_copy(teacher, tmp_path)
    with pytest.raises(CheckpointError, match="refused: it would import posix.system"):
        load_checkpoint(last)
    with pytest.raises(CheckpointError, match="refused"):
        load_latest(run / "checkpoints")
    assert not marker.exists()


def test_every_command_refuses_a_hostile_checkpoint(teacher, tmp_path, capsys):
    run, last, marker = hostile_copy(teacher, tmp_path)
    assert_refused(*run_cli(["eval", str(last)], capsys), last)
    assert_refused(*run_cli(["eval", str(run)], capsys), last)
    assert_refused(*run_cli(["analyze", "per-class", str(last), "--out", str(tmp_path / "a")], capsys), last)
    cfg = tiny_config(run, CACHE, epochs=2, data=DATA)
    assert_refused(*run_cli(["train", "-c", str(write_config(cfg, tmp_path / "r.yaml")), "--resume"], capsys), last)
    student = tiny_config(tmp_path / "student", CACHE, method="mld", teacher=str(last), data=DATA)
    assert_refused(*run_cli(["distill", "-c", str(write_config(student, tmp_path / "s.yaml"))], capsys), last)
    assert not marker.exists(), "the checkpoint's payload ran"
    assert last.exists(), "a refused file is not corrupt: it stays where it is"


def test_new_checkpoints_hold_only_tensors_and_plain_data(teacher):
    """torch's weights-only loader, without mlkd's allow-list, reads a new checkpoint."""
    state = torch.load(teacher / "checkpoints" / "last.pt", weights_only=True)
    assert isinstance(state["rng"]["numpy"][1], torch.Tensor)


def test_checkpoints_of_earlier_versions_still_load_and_resume(teacher, tmp_path, capsys):
    """Earlier mlkd wrote numpy's RNG state as an ndarray: the one extra type allowed."""
    run = tmp_path / "run"
    shutil.copytree(teacher, run)
    folder = run / "checkpoints"
    state = load_checkpoint(folder / "last.pt")
    name, keys, *rest = state["rng"]["numpy"]
    state["rng"]["numpy"] = (name, keys.numpy().astype(np.uint32), *rest)
    (folder / "last.pt").unlink()
    save_rotating(state, folder)
    assert isinstance(load_checkpoint(folder / "last.pt")["rng"]["numpy"][1], np.ndarray)
    cfg = tiny_config(run, CACHE, epochs=2, data=DATA)
    code, err = run_cli(["train", "-c", str(write_config(cfg, tmp_path / "r.yaml")), "--resume"], capsys)
    assert code == 0, err
    assert load_checkpoint(folder / "last.pt")["epoch"] == 2
