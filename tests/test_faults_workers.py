"""Faults of runs with DataLoader workers (``data.num_workers > 0``): a scheduler's SIGTERM to
the whole process group. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess

from engine_helpers import tiny_config
from fault_helpers import CACHE, cli_command, cli_env, write_config
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.errors import EXIT_PREEMPTED

DATA = {"num_workers": 2,
        "options": {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}


def test_sigterm_to_the_process_group_with_workers_exits_75_and_resumes(tmp_path):
    """``kill -TERM -<pgid>`` (SLURM's time limit, scancel) reaches the 2 workers too: they
    ignore it, the main process saves a checkpoint and exits 75, and --resume completes."""
    epochs = 4
    cfg = tiny_config(tmp_path / "run", CACHE, epochs=epochs, data=DATA, train={"eval_every": 0})
    cfg_file = write_config(cfg, tmp_path / "exp.yaml")
    proc = subprocess.Popen(cli_command("train", "-c", str(cfg_file)), env=cli_env(), text=True,
                            stderr=subprocess.PIPE, start_new_session=True)
    for line in proc.stderr:  # the first epoch is done: the workers are up and serving batches
        if f"epoch 1/{epochs}" in line:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, err
    assert "mlkd: stopped by SIGTERM " in err and "continue with --resume" in err
    stopped = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert 1 <= stopped["epoch"] < epochs
    done = subprocess.run(cli_command("train", "-c", str(cfg_file), "--resume"), env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == list(range(1, epochs + 1))
