"""A torch without the API mlkd loads checkpoints with is an error that propagates, never a
"corrupt" checkpoint that ``--resume`` would set aside; only damaged bytes are corrupt."""

import pytest
import torch

from mlkd.engine import checkpoint
from mlkd.engine.checkpoint import load_checkpoint, load_latest, save_rotating
from mlkd.errors import CheckpointCorruptError

STATE = {"model": {"w": torch.arange(6.0).view(2, 3)}, "classes": ["a", "b"], "config": {}, "epoch": 1}


@pytest.fixture
def folder(tmp_path):
    save_rotating(dict(STATE), tmp_path)
    save_rotating({**STATE, "epoch": 2}, tmp_path)
    return tmp_path


def test_torch_without_safe_globals_raises_and_sets_nothing_aside(folder, monkeypatch):
    monkeypatch.delattr(torch.serialization, "safe_globals")  # as on torch < 2.5
    with pytest.raises(AttributeError, match="safe_globals"):
        load_latest(folder, quarantine=True)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "prev.pt"]


@pytest.mark.parametrize("error", [ImportError("cannot import name 'x' from 'torch'"), TypeError("unexpected keyword")])
def test_an_api_error_inside_torch_load_propagates(folder, monkeypatch, error):
    def load(*args, **kwargs):
        raise error

    monkeypatch.setattr(checkpoint.torch, "load", load)
    with pytest.raises(type(error)):
        load_latest(folder, quarantine=True)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "prev.pt"]


def test_damaged_bytes_are_still_corrupt_and_set_aside(folder):
    last = folder / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(CheckpointCorruptError, match="unreadable or corrupt"):
        load_checkpoint(last)
    assert load_latest(folder, quarantine=True)["epoch"] == 1
    assert (folder / "last.pt.corrupt").exists()
