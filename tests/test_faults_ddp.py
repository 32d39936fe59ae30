"""DDP faults with 2 gloo processes on CPU (real torchrun / real processes, nothing mocked).

- A NaN loss on rank 1 only, under ``train.nonfinite=skip``: every rank skips that step and
  training goes on (a rank-local decision left the other rank waiting in the gradient
  all-reduce until the collective timeout); then rank 1 is SIGKILLed mid-run: the whole
  ``torchrun`` exits non-zero within a bound.
- Rank 1 frozen (SIGSTOP: a hung node, no launcher to notice): rank 0's blocked collective
  fails after ``train.dist_timeout_s`` and it exits with a one-line error instead of hanging.
  Rank 1 starts 4 s late: forming the group may take longer than that timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, NONFINITE, assert_resume_matches_uninterrupted, cli_command, cli_env, write_config  # noqa: F401
from mlkd.engine.trainer import fit

pytestmark = pytest.mark.slow  # subprocesses / torchrun

# 128 images, global batch 8 (4 per rank): 16 steps per epoch and rank.
DATA = {
    "batch_size": 8,
    "options": {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)},
}
BOUND_S = 120  # the whole command must end within this after the fault


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    fit(tiny_config(root / "teacher", CACHE, epochs=1, data=DATA))
    return str(root / "teacher" / "checkpoints" / "last.pt")


def distill_config(tmp_path, teacher, name, **train):
    cfg = tiny_config(
        tmp_path / name, CACHE, method="l2d", teacher=teacher, epochs=2, data=DATA, train={"log_interval": 1, **train}
    )
    return write_config(cfg, tmp_path / f"{name}.yaml")


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [item[5:] for item in env if item.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


class Watcher(threading.Thread):
    """Collects a process's merged output; calls ``action`` once a line contains ``trigger``."""

    def __init__(self, proc: subprocess.Popen, trigger: str, action):
        super().__init__(daemon=True)
        self.proc, self.trigger, self.action = proc, trigger, action
        self.lines: list[str] = []
        self.fired_at: float | None = None

    def run(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.fired_at is None and self.trigger in line:
                self.action()
                self.fired_at = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_nan_on_one_rank_is_skipped_everywhere_then_sigkill_ends_torchrun(teacher, tmp_path):
    """One torchrun: rank 1's loss is NaN at step 3 (policy skip), then rank 1 is SIGKILLed
    at step 8. (A DDP distillation that completes: tests/test_distributed.py.)"""
    cfg = tiny_config(
        tmp_path / "run",
        CACHE,
        method="l2d",
        teacher=teacher,
        epochs=2,
        data=DATA,
        train={"log_interval": 1, "nonfinite": "skip", "dist_timeout_s": 60},
        distill={"weights": {NONFINITE: 1.0}, "options": {NONFINITE: {"steps": [3], "rank": 1}}},
    )
    config = write_config(cfg, tmp_path / "run.yaml")
    proc = subprocess.Popen(
        torchrun("-m", "mlkd.cli", "--plugin", "fault_plugin", "distill", "--config", str(config)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = []

    def kill_rank_1():
        for pid in children(proc.pid):
            if rank_of(pid) == 1:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    watcher = Watcher(proc, "epoch 1 step 7/16", kill_rank_1)  # rank 0 logs step 7 of its 16
    watcher.start()
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    watcher.join(timeout=10)
    text = watcher.text
    # The NaN of rank 1 made both ranks skip step 3, and both went on (no all-reduce left waiting).
    assert f"non-finite loss at epoch 1 step 3 in term(s) {NONFINITE} on rank 1; step skipped" in text, text[-3000:]
    assert "non-finite loss at epoch 1 step 3 on another rank; step skipped" in text
    assert killed, "rank 1 was not found:\n" + text[-3000:]
    assert proc.returncode != 0
    assert time.monotonic() - watcher.fired_at < BOUND_S
    assert "epoch 2/2" not in text and "SIGKILL" in text
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_hung_rank_makes_the_other_fail_within_dist_timeout(teacher, tmp_path):
    """No launcher here (as under a plain srun/mpirun): only the collective timeout helps."""
    config = distill_config(tmp_path, teacher, "run", dist_timeout_s=3)  # joining may take longer
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ranks = []
    for rank in (0, 1):
        env = {
            **cli_env(),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
        ranks.append(
            subprocess.Popen(
                cli_command("distill", "--config", str(config)),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        if rank == 0:
            time.sleep(4)  # rank 1 joins later than dist_timeout_s: joining is not a collective
    watcher = Watcher(ranks[0], "epoch 1 step 3/16", lambda: os.kill(ranks[1].pid, signal.SIGSTOP))
    watcher.start()
    try:
        ranks[0].wait(timeout=300)
    finally:
        for proc in ranks:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    watcher.join(timeout=10)
    assert watcher.fired_at is not None, watcher.text[-3000:]
    assert ranks[0].returncode not in (0, None)
    assert time.monotonic() - watcher.fired_at < BOUND_S
    # gloo words it "Timed out waiting 3000ms ..." or "Application timeout caused pair closure".
    errors = [line for line in watcher.lines if line.startswith("mlkd: error:")]
    assert len(errors) == 1 and "RuntimeError" in errors[0], watcher.text[-3000:]
    assert "Traceback" not in watcher.text


def test_sigterm_on_one_rank_stops_both_at_the_same_batch_and_resume_matches(teacher, tmp_path):
    """Rank 1 alone gets SIGTERM during step 6 (log_interval 4): both ranks agree at batch 8,
    rank 0 saves that point, torchrun ends; --resume finishes bit-identical to a run never
    interrupted."""
    from fault_helpers import SIGNAL
    from mlkd.engine.checkpoint import load_checkpoint

    def run(name, *extra):
        once = str(tmp_path / f"{name}.signalled")  # the resumed run is not signalled again
        distill = {"weights": {SIGNAL: 1.0}, "options": {SIGNAL: {"steps": [6], "rank": 1, "once": once}}}
        cfg = tiny_config(
            tmp_path / name,
            CACHE,
            method="l2d",
            teacher=teacher,
            epochs=2,
            data=DATA,
            train={"log_interval": 4},
            distill=distill,
        )
        config = write_config(cfg, tmp_path / f"{name}.yaml")
        return subprocess.run(
            torchrun("-m", "mlkd.cli", "--plugin", "fault_plugin", "distill", "--config", str(config), *extra),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    stopped = run("run")
    text = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0, text[-3000:]
    assert "mlkd: stopped by SIGTERM at epoch 1, batch 8 of 16" in text, text[-3000:]  # rank 1
    assert "mlkd: stopped by a signal on another rank at epoch 1, batch 8 of 16" in text, text[-3000:]  # rank 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["partial"]["batches"] == 8 and state["global_step"] == 8
    assert_resume_matches_uninterrupted(run, tmp_path, "signalled")
