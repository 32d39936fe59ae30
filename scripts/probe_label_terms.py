"""Probe a finished demo: CD, ID and BCE of each student against the teacher on train mosaics.

usage: python scripts/probe_label_terms.py [runs/demo] [source]

Evaluates in eval mode on 256 training mosaics (never the test split) and prints one line per
model: the mean CD and ID (official variant, unweighted) and the summed BCE per batch of 64.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mlkd.config import Config
from mlkd.data.batch import collate
from mlkd.data.loaders import build_datasets
from mlkd.engine.builders import model_from_checkpoint
from mlkd.losses import bce_loss, cd_id_losses


def main(root: str = "runs/demo", source: str = "fashion-mnist", images: int = 256) -> None:
    device = torch.device("cpu")
    checkpoint = lambda name: Path(root) / f"{source}-{name}" / "checkpoints" / "last.pt"  # noqa: E731
    teacher, state = model_from_checkpoint(checkpoint("teacher"), device)
    train, _ = build_datasets(Config.model_validate(state["config"]).data)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:images].tolist()
    batches = [collate([train[i] for i in order[j:j + 64]]) for j in range(0, images, 64)]
    for name in ("teacher", "vanilla", "mld", "l2d", "l2d-validated"):
        if not checkpoint(name).exists():
            continue
        model, _ = model_from_checkpoint(checkpoint(name), device)
        values = []
        with torch.no_grad():
            for batch in batches:
                t, s = teacher(batch["images"]), model(batch["images"])
                cd, id_ = cd_id_losses(s.label_embeddings, t.label_embeddings, batch["targets"])
                values.append(torch.stack([cd, id_, bce_loss(s.logits, batch["targets"])]))
        cd, id_, bce = torch.stack(values).mean(0).tolist()
        print(f"{name:13s} CD {cd:.3f}  ID {id_:.4f}  BCE(train) {bce:.1f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
