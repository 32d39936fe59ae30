"""Predict a test set (sharded over ranks, each sample once) and score it under named protocols."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from mlkd.engine.distributed import DistInfo, gather_arrays
from mlkd.engine.runtime import Precision
from mlkd.errors import NonFiniteLossError
from mlkd.metrics import evaluate_protocols

log = logging.getLogger("mlkd")


@torch.no_grad()
def predict(
    model: nn.Module,
    loader,
    device: torch.device,
    precision: Precision,
    info: DistInfo = DistInfo(),
    channels_last: bool = False,
) -> dict[str, np.ndarray]:
    """Probabilities of every sample, in dataset order, gathered from every rank.

    Returns {"index": [N], "scores": [N, q] float32 probabilities, "targets": [N, q] uint8}.
    Unreadable images skipped by the dataset are absent; ``skipped`` counts them. Scores stay
    on the device until the pass ends (no host sync per batch; N x q floats of memory).
    """
    was_training = model.training
    model.eval()
    index, scores, targets, skipped = [], [], [], 0
    for batch in loader:
        skipped += batch["skipped"]
        if batch["images"] is None:
            continue
        images = batch["images"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            logits = model(images).logits
        scores.append(torch.sigmoid(logits.float()))  # stays on the device: one copy at the end
        targets.append(batch["targets"].to(torch.uint8))
        index.append(batch["index"])
    model.train(was_training)
    empty = np.zeros((0, len(loader.dataset.classes)))
    local = {
        "index": torch.cat(index).numpy() if index else np.zeros(0, dtype=np.int64),
        "scores": torch.cat(scores).cpu().numpy() if scores else empty.astype(np.float32),
        "targets": torch.cat(targets).numpy() if targets else empty.astype(np.uint8),
        "skipped": np.array([skipped]),
    }
    merged = gather_arrays(local, info)
    order = np.argsort(merged["index"], kind="stable")
    return {
        "index": merged["index"][order],
        "scores": merged["scores"][order],
        "targets": merged["targets"][order],
        "skipped": int(merged["skipped"].sum()),
    }


def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    precision: Precision,
    protocols: list[str],
    info: DistInfo = DistInfo(),
    channels_last: bool = False,
    thresholds=None,
) -> dict:
    """Metrics of ``model`` on ``loader`` for every protocol: {protocol: metrics dict, ...}.
    ``thresholds [q]``: the per-class thresholds of the ``calibrated`` protocol.

    A model whose scores are NaN (it diverged) has no meaningful ranking: NonFiniteLossError
    says on how many test images, instead of metrics computed on part of the test set.
    """
    predictions = predict(model, loader, device, precision, info, channels_last)
    bad = int(np.isnan(predictions["scores"]).any(axis=1).sum())
    if bad:
        raise NonFiniteLossError(
            f"evaluation: {bad} of {len(predictions['index'])} test images have NaN "
            "scores (the model diverged; e.g. lower optim.lr)"
        )
    result = evaluate_protocols(predictions["scores"], predictions["targets"], protocols, thresholds)
    result["num_images"] = int(len(predictions["index"]))
    result["skipped"] = predictions["skipped"]
    if result["skipped"] and info.is_main:
        log.warning(
            "evaluation: %d unreadable test image(s) skipped; the metrics cover the other %d",
            result["skipped"],
            result["num_images"],
        )
    return result


def saved_config(state: dict, path: str) -> Config:  # noqa: F821
    """The config a checkpoint was trained with; one this version cannot read (a key it does
    not know, say) is a CheckpointError naming the key and the versions."""
    from mlkd import __version__
    from mlkd.config import config_from_dict
    from mlkd.errors import CheckpointError, ConfigError

    try:
        return config_from_dict(state["config"], f"checkpoint {path}: its saved config")
    except ConfigError as err:
        raise CheckpointError(
            f"{err}; it was written by mlkd {state.get('mlkd_version', 'of another version')}, "
            f"this is mlkd {__version__}: use the version that wrote it"
        ) from None


def evaluate_checkpoint(
    path: str,
    protocols: list[str] | None = None,
    data_cfg=None,
    device: str = "auto",
    amp: str | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Evaluate a saved model on the test split of its own data config (or ``data_cfg``);
    ``overrides`` (``key.sub=value``) change the checkpoint's own config first (e.g.
    ``data.holdout=0``: the real test split of a run that evaluated on a validation split).

    Uses the checkpoint's precision and eval batch size unless told otherwise, so the numbers
    equal those its run logged. ``calibrated`` reads the thresholds ``mlkd calibrate`` stored
    beside the checkpoint (they must have been chosen for these weights).
    """
    from mlkd.data.loaders import build_datasets, eval_loader
    from mlkd.engine.builders import model_from_checkpoint
    from mlkd.engine.checkpoint import check_classes
    from mlkd.engine.runtime import resolve_device, resolve_precision
    from mlkd.metrics import parse_protocol

    for protocol in protocols or ():  # a typo fails now, not after predicting the whole test set
        parse_protocol(protocol)
    torch_device = resolve_device(device)
    model, state = model_from_checkpoint(path, torch_device)
    thresholds = None
    if any(parse_protocol(p).kind == "calibrated" for p in protocols or ()):
        from mlkd.engine.calibrate import stored_thresholds

        thresholds = stored_thresholds(path, state)["thresholds"]
    saved = saved_config(state, path)
    if overrides:
        from mlkd.config import apply_overrides, config_from_dict

        saved = config_from_dict(apply_overrides(saved.model_dump(), overrides), f"checkpoint {path} + overrides")
    data_cfg = data_cfg or saved.data
    _, test_set = build_datasets(data_cfg)
    check_classes(state["classes"], list(test_set.classes), f"checkpoint {path}")
    precision = resolve_precision(amp or saved.train.amp, torch_device)
    loader = eval_loader(test_set, data_cfg, DistInfo(), torch_device.type == "cuda")
    return evaluate(model, loader, torch_device, precision, protocols or saved.train.protocols, thresholds=thresholds)
