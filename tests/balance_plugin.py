"""A plugin module for torchrun runs of tests/test_balance.py (``mlkd --plugin balance_plugin``):
after every epoch each rank saves its WeightBalancer state and the epoch's balance and
diagnostics figures (both computed on every rank) to ``$MLKD_BALANCE_DUMP/rank<r>-epoch<e>.pt``."""

import os
from pathlib import Path

import torch

import mlkd.engine.trainer as trainer

_train_one_epoch = trainer.train_one_epoch


def train_one_epoch(run):
    means = _train_one_epoch(run)
    folder = Path(os.environ["MLKD_BALANCE_DUMP"])
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state": run.balancer.state_dict(), "balance": means.get("balance"), "diagnostics": means.get("diagnostics")},
        folder / f"rank{run.info.rank}-epoch{run.epoch + 1}.pt",
    )
    return means


trainer.train_one_epoch = train_one_epoch
