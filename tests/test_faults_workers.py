"""Faults of runs with DataLoader workers (``data.num_workers > 0``): a scheduler's SIGTERM to
the whole process group; resumption (after an epoch, and mid-epoch after SIGTERM) with
augmentation drawn in 2 workers, bit-identical to an uninterrupted run. Real processes, real
signals."""

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

DATA = {
    "num_workers": 2,
    "options": {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)},
}


@pytest.mark.slow  # a subprocess
def test_sigterm_to_the_process_group_with_workers_exits_75_and_resumes(tmp_path):
    """``kill -TERM -<pgid>`` (SLURM's time limit, scancel) reaches the 2 workers too: they
    ignore it, the main process saves a checkpoint and exits 75, and --resume completes."""
    epochs = 4
    cfg = tiny_config(tmp_path / "run", CACHE, epochs=epochs, data=DATA, train={"eval_every": 0})
    cfg_file = write_config(cfg, tmp_path / "exp.yaml")
    proc = subprocess.Popen(
        cli_command("train", "-c", str(cfg_file)),
        env=cli_env(),
        text=True,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    for line in proc.stderr:  # the first epoch is done: the workers are up and serving batches
        if f"epoch 1/{epochs}" in line:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, err
    assert "mlkd: stopped by SIGTERM " in err and "continue with --resume" in err
    stopped = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert 1 <= stopped["epoch"] < epochs
    done = subprocess.run(
        cli_command("train", "-c", str(cfg_file), "--resume"),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == list(range(1, epochs + 1))


AUGMENTED = {**DATA, "recipe": "official"}  # Cutout + RandAugment draw in the workers
BATCHES = 4  # 128 images / 32 per batch


def augmented_config(run_dir, **optim):
    return tiny_config(run_dir, CACHE, epochs=2, data=AUGMENTED, optim={"lr": 1e-3, "epochs": 2, **optim})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("workers") / "full"
    fit(augmented_config(run_dir))
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def test_resume_after_an_epoch_with_workers_is_bit_identical(uninterrupted, tmp_path):
    """stop_epoch=1, then --resume: the resumed process's fresh workers draw the augmentation an
    uninterrupted run's persistent workers drew, and dropout draws the same stream."""
    fit(augmented_config(tmp_path / "run", stop_epoch=1))
    fit(augmented_config(tmp_path / "run"), resume=True)
    assert_same_tensors(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"], uninterrupted["model"])


def test_resume_mid_epoch_with_workers_is_bit_identical(uninterrupted, tmp_path, monkeypatch):
    """SIGTERM at the 2nd batch of epoch 2: the resumed epoch starts at batch 3, which worker 0
    now loads (worker 1 in the uninterrupted run); the weights still end bit-identical."""
    real, calls = Objective.term_values, []

    def term_values(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == BATCHES + 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Objective, "term_values", term_values)
    with pytest.raises(Preempted, match="at epoch 2, batch 2 of 4"):
        fit(augmented_config(tmp_path / "run"))
    monkeypatch.undo()
    fit(augmented_config(tmp_path / "run"), resume=True)
    assert_same_tensors(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"], uninterrupted["model"])


@pytest.mark.parametrize("workers", [0, 3])
def test_the_number_of_workers_does_not_change_the_run(uninterrupted, tmp_path, workers):
    """The same config with 0 (the main process) or 3 workers instead of 2: every item's
    augmentation is seeded by (seed, epoch, index), so the weights end bit-identical, and so do
    the logged losses and metrics."""
    cfg = augmented_config(tmp_path / "run")
    cfg.data.num_workers = workers
    fit(cfg)
    assert_same_tensors(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"], uninterrupted["model"])
