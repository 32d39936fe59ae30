"""A loss that becomes NaN/inf in a real run, under ``train.nonfinite: stop | skip``.

The NaN comes from a test-only loss term (``fault_helpers.NonFiniteTerm``, weight 1) at the
6th step: epoch 2, step 2 of 4. ``stop``: a one-line error naming the epoch, the step and the
term; the last checkpoint is epoch 1's, bit-identical to a run that stopped there, and finite.
``skip``: the run completes, the step is counted in ``skipped_steps`` and never reaches the
weights or Adam's state. A teacher whose weights are NaN (a diverged run) is refused before
training, naming the file.
"""

from __future__ import annotations

import logging

import pytest
import torch

from engine_helpers import tiny_config
from fault_helpers import CACHE, NONFINITE, all_finite, assert_same_tensors, nonfinite_term, run_cli, write_config  # noqa: F401
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from mlkd.errors import NonFiniteLossError

DATA = {"options": {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}
STEPS_PER_EPOCH = 4


def config(run_dir, policy="stop", value="nan", **optim):
    return tiny_config(
        run_dir,
        CACHE,
        epochs=2,
        data=DATA,
        optim=optim,
        train={"nonfinite": policy},
        distill={"weights": {NONFINITE: 1.0}, "options": {NONFINITE: {"steps": [STEPS_PER_EPOCH + 2], "value": value}}},
    )


@pytest.fixture(scope="module")
def epoch1(tmp_path_factory):
    """The same run stopped cleanly after epoch 1 (the fault term has not fired yet)."""
    root = tmp_path_factory.mktemp("nonfinite")
    with nonfinite_term():
        fit(config(root / "epoch1", stop_epoch=1))
    return load_checkpoint(root / "epoch1" / "checkpoints" / "last.pt")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_stop_names_step_and_term_and_keeps_the_last_good_checkpoint(epoch1, tmp_path, capsys, value):
    cfg_file = write_config(config(tmp_path / "run", value=value), tmp_path / "exp.yaml")
    with nonfinite_term():
        code, err = run_cli(["train", "-c", str(cfg_file)], capsys)
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    assert f"epoch 2 step {STEPS_PER_EPOCH + 2} " in text and f"term(s) {NONFINITE}" in text, text
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1 and all_finite(last["model"])
    assert_same_tensors(last["model"], epoch1["model"])
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1]
    if value == "nan":  # the run goes on from epoch 1 with the other policy (a fresh term: no NaN)
        with nonfinite_term():
            code, err = run_cli(["train", "-c", str(cfg_file), "--resume", "train.nonfinite=skip"], capsys)
        assert code == 0, err
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2


def test_skip_completes_without_applying_the_step(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    with nonfinite_term():
        record = fit(config(tmp_path / "run", policy="skip"))
    assert record["epoch"] == 2
    assert f"non-finite loss at epoch 2 step {STEPS_PER_EPOCH + 2} in term(s) {NONFINITE}; step skipped" in caplog.text
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["train"]["skipped_steps"] for r in records] == [0, 1]
    assert all(r["train"]["loss"] is not None for r in records)  # means over applied steps: finite
    for name in ("last.pt", "prev.pt"):
        state = load_checkpoint(tmp_path / "run" / "checkpoints" / name)
        assert all_finite(state["model"])
        for param_state in state["optimizer"]["state"].values():
            assert all(bool(torch.isfinite(v).all()) for v in param_state.values())
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    steps = {int(s["step"]) for s in last["optimizer"]["state"].values()}
    assert steps == {2 * STEPS_PER_EPOCH - 1}, "the skipped step must not reach Adam's state"


def test_a_teacher_with_nan_weights_is_refused_before_training(tmp_path, capsys, monkeypatch):
    fit(tiny_config(tmp_path / "teacher", CACHE, epochs=1, data=DATA))
    state = load_checkpoint(tmp_path / "teacher" / "checkpoints" / "last.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.dim() > 1)
    state["model"][name][0].fill_(float("nan"))  # what a diverged teacher run leaves behind
    bad = tmp_path / "diverged.pt"
    torch.save(state, bad)
    from mlkd.engine import trainer

    def train_spy(run):
        raise AssertionError("training started")

    monkeypatch.setattr(trainer, "train_one_epoch", train_spy)
    cfg_file = write_config(
        tiny_config(tmp_path / "student", CACHE, method="mld", teacher=str(bad), data=DATA), tmp_path / "exp.yaml"
    )
    code, err = run_cli(["distill", "-c", str(cfg_file)], capsys)
    assert code == 2 and str(bad) in err and "non-finite" in err and name in err, err


def test_finite_loss_with_nan_gradients_is_caught_like_a_nan_loss(epoch1, tmp_path, caplog):
    """stop: error naming the step, weights = epoch 1's; skip: the step never reaches Adam."""
    with (
        nonfinite_term(),
        pytest.raises(NonFiniteLossError, match=f"non-finite gradients at epoch 2 step {STEPS_PER_EPOCH + 2} "),
    ):
        fit(config(tmp_path / "stop", value="nan-grad"))
    last = load_checkpoint(tmp_path / "stop" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    assert_same_tensors(last["model"], epoch1["model"])
    caplog.set_level(logging.WARNING)
    with nonfinite_term():
        fit(config(tmp_path / "skip", policy="skip", value="nan-grad"))
    assert "non-finite gradients at epoch 2 step 6 (the loss was finite); step skipped" in caplog.text
    assert [r["train"]["skipped_steps"] for r in read_jsonl(tmp_path / "skip" / "metrics.jsonl")] == [0, 1]
    last = load_checkpoint(tmp_path / "skip" / "checkpoints" / "last.pt")
    assert all_finite(last["model"])
    assert {int(s["step"]) for s in last["optimizer"]["state"].values()} == {2 * STEPS_PER_EPOCH - 1}
