"""Pre-emption: SIGTERM / SIGUSR1 while a run trains stops it after the current step with a
checkpoint of that point; --resume continues from the next batch and ends bit-identical to an
uninterrupted run (weights, Adam state, logged metrics). The signals are real (os.kill)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, assert_same_tensors, cli_command, cli_env, write_config
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from mlkd.errors import EXIT_PREEMPTED, Preempted
from mlkd.losses.objective import Objective
from mlkd.reproduce.grid import load_grid
from mlkd.reproduce.sweep import run_sweep

DATA = {"options": {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}
BATCHES = 4  # 128 images / 32 per batch


def config(run_dir, teacher=None, epochs=2):
    method = "l2d" if teacher else "vanilla"
    return tiny_config(run_dir, CACHE, method=method, teacher=teacher, epochs=epochs, data=DATA)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A teacher, and the uninterrupted L2D student the pre-empted runs must reproduce."""
    root = tmp_path_factory.mktemp("preempt")
    fit(config(root / "teacher"))
    teacher = str(root / "teacher" / "checkpoints" / "last.pt")
    fit(config(root / "full", teacher))
    return {
        "teacher": teacher,
        "state": load_checkpoint(root / "full" / "checkpoints" / "last.pt"),
        "metrics": read_jsonl(root / "full" / "metrics.jsonl"),
    }


def signal_at_step(monkeypatch, step, signum=signal.SIGTERM):
    """Send ``signum`` to this process during the ``step``-th step's objective (1-based)."""
    real, calls = Objective.term_values, []

    def term_values(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signum)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Objective, "term_values", term_values)


def without_timing(records):
    return [
        {**r, "train": {k: v for k, v in r["train"].items() if k not in ("seconds", "images_per_s")}} for r in records
    ]


@pytest.mark.parametrize("step,signum", [(BATCHES + 2, signal.SIGTERM), (BATCHES, signal.SIGUSR1)])
def test_signal_stops_at_the_step_and_resume_is_bit_identical(reference, tmp_path, monkeypatch, step, signum):
    cfg = config(tmp_path / "run", reference["teacher"])
    signal_at_step(monkeypatch, step, signum)
    batch = step - BATCHES if step > BATCHES else step
    epoch = 2 if step > BATCHES else 1
    with pytest.raises(
        Preempted,
        match=f"stopped by {signal.Signals(signum).name} at epoch {epoch}, "
        f"batch {batch} of {BATCHES}; saved .*last.pt: continue with --resume",
    ):
        fit(cfg)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["epoch"] == epoch - 1 and saved["partial"]["batches"] == batch
    assert saved["global_step"] == step
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert (len(read_jsonl(metrics)) if metrics.exists() else 0) == epoch - 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after fit
    monkeypatch.undo()
    fit(cfg, resume=True)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert_same_tensors(state["model"], reference["state"]["model"])
    for key, value in reference["state"]["optimizer"]["state"].items():
        assert_same_tensors(state["optimizer"]["state"][key], value)
    assert state["partial"] is None and state["global_step"] == reference["state"]["global_step"]
    assert without_timing(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == without_timing(reference["metrics"])


@pytest.mark.slow  # a subprocess
def test_cli_exits_75_on_sigterm_and_resumes(tmp_path):
    """A real `mlkd train` process signalled from outside once it is training."""
    cfg = tiny_config(tmp_path / "run", CACHE, epochs=40, data=DATA, train={"eval_every": 0})
    cfg_file = write_config(cfg, tmp_path / "exp.yaml")
    proc = subprocess.Popen(cli_command("train", "-c", str(cfg_file)), env=cli_env(), text=True, stderr=subprocess.PIPE)
    for line in proc.stderr:  # wait until the first epoch is logged
        if "epoch 1/40" in line:
            break
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, err
    assert "mlkd: stopped by SIGTERM " in err and "continue with --resume" in err
    stopped = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert 1 <= stopped["epoch"] < 40
    done = subprocess.run(
        cli_command("train", "-c", str(cfg_file), "--resume"),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == list(range(1, 41))


def test_a_preempted_run_stops_the_sweep_even_with_keep_going(tmp_path):
    from test_reproduce_sweep import write_grid

    grid = load_grid(write_grid(tmp_path, tmp_path / "cache", methods=["teacher", "mld"]))

    def preempted(cfg, resume=False):
        raise Preempted("stopped by SIGTERM at epoch 1, batch 1 of 4")

    with pytest.raises(Preempted):
        run_sweep(grid, keep_going=True, fit_fn=preempted)


def test_a_signal_during_a_runs_last_evaluation_stops_the_sweep_before_the_next_run(tmp_path, monkeypatch):
    """The run is finished when the signal is acted on: it stays finished, the sweep raises
    Preempted before the next run, and a rerun trains only what is left."""
    import mlkd.engine.trainer as trainer
    from test_reproduce_sweep import write_grid

    grid = load_grid(write_grid(tmp_path, tmp_path / "cache", methods=["teacher", "mld"]))
    real, calls = trainer.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the first run's (last) evaluation
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    with pytest.raises(Preempted, match="stopped by SIGTERM before run 2 of 4"):
        run_sweep(grid)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    from mlkd.reproduce.sweep import run_status

    assert [run_status(r) for r in grid.runs] == ["done", "todo", "todo", "todo"]
    assert [s for s in run_sweep(grid).status.values()] == ["skipped", "trained", "trained", "trained"]


def test_signal_during_an_epochs_evaluation_stops_after_that_epoch(reference, tmp_path, monkeypatch):
    """Not the last epoch: its checkpoint is already written, the run stops there (no partial
    epoch) and --resume ends bit-identical to the uninterrupted run."""
    import mlkd.engine.trainer as trainer

    cfg = config(tmp_path / "run", reference["teacher"])
    real, calls = trainer.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    with pytest.raises(Preempted, match="stopped by SIGTERM after epoch 1; saved .*last.pt: continue with --resume"):
        fit(cfg)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["epoch"] == 1 and saved["partial"] is None
    monkeypatch.undo()
    fit(cfg, resume=True)
    assert_same_tensors(
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"], reference["state"]["model"]
    )
