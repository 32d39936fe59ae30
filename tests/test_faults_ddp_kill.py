"""2-rank gloo DDP runs (real torchrun): rank 1 SIGKILLed mid-epoch (torchrun ends the run
non-zero; ``--resume`` from the last epoch's checkpoint ends bit-identical, weights and metrics,
to an uninterrupted DDP run); rank 0's checkpoint write refused by the kernel (both ranks end,
with rank 0's one-line error)."""

from __future__ import annotations

import resource
import subprocess

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, SIGNAL, assert_resume_matches_uninterrupted, cli_env, write_config
from mlkd.engine.checkpoint import load_checkpoint
from test_faults_ddp import BOUND_S, DATA, teacher, torchrun  # noqa: F401 (teacher is a fixture)

pytestmark = pytest.mark.slow  # subprocesses / torchrun


def test_sigkill_of_one_rank_mid_epoch_then_resume_matches_an_uninterrupted_run(teacher, tmp_path):  # noqa: F811
    def run(name, *extra):
        once = str(tmp_path / f"{name}.killed")  # the resumed run is not killed again
        distill = {
            "weights": {SIGNAL: 1.0},
            "options": {SIGNAL: {"steps": [20], "rank": 1, "signal": "SIGKILL", "once": once}},
        }
        cfg = tiny_config(tmp_path / name, CACHE, method="l2d", teacher=teacher, epochs=2, data=DATA, distill=distill)
        config = write_config(cfg, tmp_path / f"{name}.yaml")
        return subprocess.run(
            torchrun("-m", "mlkd.cli", "--plugin", "fault_plugin", "distill", "--config", str(config), *extra),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    killed = run("run")  # rank 1 dies at step 20: epoch 2, batch 4 of 16
    assert killed.returncode != 0, (killed.stdout + killed.stderr)[-3000:]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["partial"] is None
    assert_resume_matches_uninterrupted(run, tmp_path, "killed")


def test_a_failing_checkpoint_write_on_rank_0_ends_both_ranks_with_its_error(tmp_path):
    """Under a 1 MB file-size limit (RLIMIT_FSIZE: the kernel refuses the bytes, as a full disk
    would) rank 0's first checkpoint write fails: it exits with the one-line error, rank 1 (in
    the barrier) fails too instead of waiting, torchrun exits non-zero and no file is left."""
    cfg = write_config(tiny_config(tmp_path / "run", CACHE, epochs=2, data=DATA), tmp_path / "run.yaml")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run(
        torchrun("-m", "mlkd.cli", "--plugin", "fault_plugin", "train", "--config", str(cfg)),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        preexec_fn=limit,
    )
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert "mlkd: error: cannot write checkpoint " in text and "nothing was replaced" in text, text[-3000:]
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []
