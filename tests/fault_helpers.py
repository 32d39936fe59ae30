"""Helpers of the fault-injection tests (tests/test_faults_*.py).

- ``NonFiniteTerm`` / ``nonfinite_term()``: a test-only loss term that returns NaN or inf at
  chosen calls (training steps), optionally only on one DDP rank. It is real arithmetic in the
  real training loop: nothing of the engine is mocked. Its registration is scoped
  (``nonfinite_term()``) so other tests never see it in ``LOSS_TERMS``; ``fault_plugin.py``
  registers it in subprocesses (torchrun).
- ``SignalTerm``: a test-only term that sends this process a real SIGTERM / SIGUSR1 at a chosen
  step (pre-emption), optionally on one rank only; registered with the other.
- ``write_config``: a tiny config as a YAML file (for ``mlkd.cli`` in a subprocess).
- ``run_cli``: ``mlkd.cli.main`` in-process, returning (exit code, stderr).
- ``cli_command`` / ``cli_env``: the command line of ``python -m mlkd.cli`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal as signal_module
import sys
from pathlib import Path
from typing import Iterator, Sequence

import torch
import yaml

from mlkd.losses.objective import LOSS_TERMS, LossTerm

TESTS = Path(__file__).resolve().parent
CACHE = TESTS / ".cache" / "mosaic"  # mosaic arrays shared by the fault tests (git-ignored)
NONFINITE = "fault_nonfinite"
SIGNAL = "fault_signal"


class _NaNGradient(torch.autograd.Function):
    """Value 0 (finite), gradient NaN: what a sqrt or a division at 0 does to a finite loss."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return (x * 0).sum()

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float("nan"), dtype=grad.dtype, device=grad.device)


class NonFiniteTerm(LossTerm):
    """0 (with a zero gradient to the logits) except at the 1-based ``steps`` calls of this
    process, where it is ``value``: "nan" | "inf", or "nan-grad" (the value stays 0 but the
    gradient to the logits is NaN). ``rank``: only on that DDP rank."""

    name, needs_teacher = NONFINITE, False

    def __init__(self, steps: Sequence[int] = (), value: str = "nan", rank: int | None = None):
        super().__init__()
        self.steps, self.value, self.rank, self.calls = set(steps), value, rank, 0

    def compute(self, s, t, targets):
        self.calls += 1
        here = self.rank is None or int(os.environ.get("RANK", "0")) == self.rank
        bad = here and self.calls in self.steps
        if bad and self.value == "nan-grad":
            return _NaNGradient.apply(s)
        return (s * 0).sum() + (float(self.value) if bad else 0.0)


class SignalTerm(LossTerm):
    """0, and at the 1-based ``steps`` calls of this process (on ``rank`` only, if given) a real
    ``signal`` (a name, default SIGTERM) sent to this process: a pre-emption at a known step.
    ``once``: a file created when the signal is sent; while it exists no signal is sent (so the
    resumed run, with the same config, is not pre-empted again)."""

    name, needs_teacher = SIGNAL, False

    def __init__(
        self, steps: Sequence[int] = (), rank: int | None = None, signal: str = "SIGTERM", once: str | None = None
    ):
        super().__init__()
        self.steps, self.rank, self.signal, self.once, self.calls = set(steps), rank, signal, once, 0

    def compute(self, s, t, targets):
        self.calls += 1
        here = self.rank is None or int(os.environ.get("RANK", "0")) == self.rank
        if here and self.calls in self.steps and not (self.once and os.path.exists(self.once)):
            if self.once:
                Path(self.once).touch()
            os.kill(os.getpid(), getattr(signal_module, self.signal))
        return (s * 0).sum()


def register_nonfinite_term() -> None:
    """Register the test-only terms (``fault_nonfinite``, ``fault_signal``)."""
    if NONFINITE not in LOSS_TERMS:
        LOSS_TERMS.register(NONFINITE)(NonFiniteTerm)
    if SIGNAL not in LOSS_TERMS:
        LOSS_TERMS.register(SIGNAL)(SignalTerm)


@contextlib.contextmanager
def nonfinite_term() -> Iterator[None]:
    """``NonFiniteTerm`` registered as ``fault_nonfinite`` for the duration of the block."""
    with LOSS_TERMS.scoped():
        register_nonfinite_term()
        yield


def write_config(cfg, path: Path) -> Path:
    """A validated Config as a YAML file."""
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``mlkd.cli.main(argv)`` in this process: (exit code, stderr)."""
    from mlkd.cli import main

    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def cli_env() -> dict[str, str]:
    """The environment of subprocess runs: one thread each (the machine has 2 cores) and the
    source tree importable."""
    path = os.pathsep.join([str(TESTS), str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlkd.cli", *args]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_same_tensors(a: dict, b: dict) -> None:
    """Bit-identical state dicts: the same keys and torch.equal on every tensor."""
    assert list(a) == list(b)
    for key, value in a.items():
        assert torch.equal(value, b[key]), f"tensor {key} differs"


def assert_resume_matches_uninterrupted(run, tmp_path: Path, marker: str) -> None:
    """``run("run", "--resume")`` completes, then a reference ``run("full")`` (its ``full.<marker>``
    file tells the fault injector to leave it alone) ends with the same weights and final metrics."""
    from mlkd.engine.checkpoint import load_checkpoint
    from mlkd.engine.logs import read_jsonl

    resumed = run("run", "--resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    (tmp_path / f"full.{marker}").touch()
    full = run("full")
    assert full.returncode == 0, (full.stdout + full.stderr)[-3000:]
    a = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    assert_same_tensors(a["model"], b["model"])
    assert (
        read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]["eval"]
        == read_jsonl(tmp_path / "full" / "metrics.jsonl")[-1]["eval"]
    )


def all_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
