"""Suite-wide fixtures."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """In-process tests use one torch thread (restored after): on a small shared machine two
    OpenMP threads contend with the other processes and a tiny training step gets ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
