"""A training process killed with SIGKILL in the middle of an epoch resumes from its last
checkpoint and ends with exactly the weights of an uninterrupted run (CPU, same seed).

The victim is a real ``python -m mlkd.cli train`` subprocess (one torch thread); a thread
watches its log and kills it once epoch 1's checkpoint is on disk and epoch 2 has logged two
steps. Meanwhile this process trains the uninterrupted reference (also one thread), then runs
``mlkd train --resume`` on the victim's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, assert_same_tensors, cli_command, cli_env, run_cli, write_config  # noqa: F401
from mlkd.data.loaders import build_datasets
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit

pytestmark = pytest.mark.slow  # subprocesses / torchrun

# 256 images in batches of 8: 32 steps per epoch, one log line per step.
DATA = {
    "batch_size": 8,
    "options": {"source": "digits", "num_train": 256, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)},
}
DEADLINE_S = 240


def config(run_dir):
    return tiny_config(run_dir, CACHE, epochs=2, data=DATA, train={"log_interval": 1})


class Killer(threading.Thread):
    """Reads the victim's log; SIGKILLs it once epoch 2 has logged its second step."""

    def __init__(self, victim: subprocess.Popen, last: Path):
        super().__init__(daemon=True)
        self.victim, self.last, self.lines, self.checkpoint_seen = victim, last, [], None

    def run(self):
        for line in self.victim.stderr:
            self.lines.append(line)
            if "epoch 2 step 2/32" in line:
                self.checkpoint_seen = self.last.exists()  # written before epoch 2 starts
                os.kill(self.victim.pid, signal.SIGKILL)
                return


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path, capsys):
    build_datasets(config(tmp_path / "x").data)  # the mosaic cache, before the subprocess needs it
    victim_cfg = write_config(config(tmp_path / "victim"), tmp_path / "victim.yaml")
    last = tmp_path / "victim" / "checkpoints" / "last.pt"
    victim = subprocess.Popen(
        cli_command("train", "-c", str(victim_cfg)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = Killer(victim, last)
    killer.start()
    try:
        fit(config(tmp_path / "full"))  # the uninterrupted reference, meanwhile, in this process
        victim.wait(timeout=DEADLINE_S)
    finally:
        if victim.poll() is None:
            victim.kill()
    killer.join(timeout=10)
    log = "".join(killer.lines[-20:])
    assert victim.returncode == -signal.SIGKILL, log
    assert killer.checkpoint_seen, log
    assert load_checkpoint(last)["epoch"] == 1, "the kill must land inside epoch 2"
    assert not any("epoch 2/2" in line for line in killer.lines)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "victim" / "metrics.jsonl")] == [1]

    code, err = run_cli(["train", "-c", str(victim_cfg), "--resume"], capsys)  # same threads: 1
    assert code == 0, err

    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"] == 64
    assert_same_tensors(a["model"], b["model"])
    for key in ("exp_avg", "exp_avg_sq"):  # Adam's moments too
        for index, state in a["optimizer"]["state"].items():
            assert state[key].equal(b["optimizer"]["state"][index][key]), (key, index)
    full_log = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    resumed_log = read_jsonl(tmp_path / "victim" / "metrics.jsonl")
    assert [r["epoch"] for r in resumed_log] == [1, 2]
    assert resumed_log[-1]["eval"] == full_log[-1]["eval"]
    assert resumed_log[-1]["train"]["loss"] == full_log[-1]["train"]["loss"]
