"""Suite-wide fixtures."""

import os

import pytest
import torch

# train.amp=auto resolves to full precision on every CPU in the suite (and its subprocesses),
# so a run's numbers do not depend on whether the machine has AMX; tests of the bf16 choice
# set the variable themselves.
os.environ["MLKD_CPU_BF16"] = "0"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """In-process tests use one torch thread (restored after): on a small shared machine two
    OpenMP threads contend with the other processes and a tiny training step gets ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
