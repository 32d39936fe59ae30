"""``mlkd calibrate``: per-label thresholds of a trained model, chosen on a validation split.

The validation split is ``data.holdout`` of the training images (``mlkd.data.holdout``): the
run's own value, or ``holdout`` given here for a run trained with ``data.holdout: 0`` (the model
then saw those images in training, which is recorded and logged). The test split is never
read to choose anything. The thresholds (:func:`mlkd.calibration.choose_thresholds`) are
written atomically to ``thresholds.json`` beside the checkpoint with a digest of the weights
they were chosen for, and the run's evaluation split is scored under the ``calibrated``
protocol (what ``mlkd table -p calibrated`` shows).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from mlkd.calibration import (
    DEFAULT_MIN_POSITIVES,
    DEFAULT_THRESHOLD,
    choose_thresholds,
    read_thresholds,
    thresholds_path,
    write_thresholds,
)
from mlkd.errors import ConfigError

log = logging.getLogger("mlkd")


def weights_digest(state: dict) -> str:
    """SHA-256 of a checkpoint's model weights (the thresholds' link to them)."""
    from mlkd.engine.checkpoint import state_digest

    return state_digest({"model": state["model"]})


def stored_thresholds(path: str | Path, state: dict, required: bool = True) -> Optional[dict]:
    """The thresholds file of the checkpoint ``path`` (loaded as ``state``), checked against
    its classes and weights; None when absent and not ``required``. A missing (when required),
    unreadable or stale file is a ConfigError saying to run ``mlkd calibrate``."""
    file = thresholds_path(path)
    if not file.is_file():
        if not required:
            return None
        raise ConfigError(f"protocol 'calibrated': {file} not found; run `mlkd calibrate {path}` first")
    try:
        data = read_thresholds(file, list(state["classes"]))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if data.get("checkpoint", {}).get("weights_sha256") != weights_digest(state):
        raise ConfigError(
            f"{file} was chosen for other weights (the checkpoint changed since); run `mlkd calibrate {path}` again"
        )
    return data


def _scores(model, dataset, data_cfg, device, precision) -> dict:
    from mlkd.data.loaders import eval_loader
    from mlkd.engine.distributed import DistInfo
    from mlkd.engine.evaluation import predict

    return predict(model, eval_loader(dataset, data_cfg, DistInfo(), device.type == "cuda"), device, precision)


def calibrate_run(
    path: str | Path, holdout: Optional[float] = None, min_positives: int = DEFAULT_MIN_POSITIVES, device: str = "auto"
) -> dict:
    """Choose and store the thresholds of the checkpoint ``path`` (a file or a run folder).

    ``holdout``: the validation fraction of the training images (default: the run's
    ``data.holdout``; required when that is 0). Returns the stored payload (plus ``path``).
    """
    from mlkd.data.loaders import build_datasets
    from mlkd.engine.builders import model_from_checkpoint
    from mlkd.engine.checkpoint import check_classes, checkpoint_file
    from mlkd.engine.evaluation import saved_config
    from mlkd.engine.runtime import resolve_device, resolve_precision
    from mlkd.metrics import CALIBRATED, evaluate_protocols

    torch_device = resolve_device(device)
    model, state = model_from_checkpoint(path, torch_device)
    cfg = saved_config(state, str(path))
    fraction = cfg.data.holdout if holdout is None else float(holdout)
    if not 0 < fraction < 1:
        raise ConfigError(
            f"mlkd calibrate: {path} was trained with data.holdout=0, so it has no validation "
            "split; give --holdout F (a fraction of the training images, e.g. 0.1: the model "
            "saw them in training, so its thresholds may be optimistic)"
        )
    seen = fraction != cfg.data.holdout
    if seen:
        log.warning(
            "calibrate: the model was trained on the %.3g of training images held out here "
            "(its data.holdout is %s): the thresholds may be optimistic",
            fraction,
            cfg.data.holdout,
        )
    precision = resolve_precision(cfg.train.amp, torch_device)
    _, validation = build_datasets(cfg.data.model_copy(update={"holdout": fraction}))
    check_classes(state["classes"], list(validation.classes), f"checkpoint {path}")
    val = _scores(model, validation, cfg.data, torch_device, precision)
    choice = choose_thresholds(val["scores"], val["targets"], min_positives)
    if cfg.data.holdout == fraction:  # the run evaluates on this very split
        evaluated, split = val, "validation (the split the thresholds were chosen on: optimistic)"
    else:
        _, test_set = build_datasets(cfg.data)
        evaluated, split = _scores(model, test_set, cfg.data, torch_device, precision), "test"
    metrics = evaluate_protocols(evaluated["scores"], evaluated["targets"], [CALIBRATED], choice.thresholds)
    payload = {
        "classes": list(state["classes"]),
        "thresholds": [float(t) for t in choice.thresholds],
        "rules": choice.rules,
        "validation_f1": [float(f) for f in choice.f1],
        "validation_positives": [int(p) for p in choice.positives],
        "min_positives": int(min_positives),
        "default_threshold": DEFAULT_THRESHOLD,
        "validation": {
            "split": "data.holdout",
            "fraction": fraction,
            "images": int(len(val["index"])),
            "model_trained_on_it": seen,
        },
        "checkpoint": {
            "file": str(checkpoint_file(path)),
            "epoch": int(state["epoch"]),
            "weights_sha256": weights_digest(state),
        },
        "evaluated_split": split,
        "eval": {CALIBRATED: _plain(metrics[CALIBRATED])},
    }
    file = write_thresholds(thresholds_path(path), payload)
    log.info(
        "calibrate: %d of %d labels use their F1 threshold; wrote %s", choice.rules.count("f1"), len(choice.rules), file
    )
    return {"path": str(file), **payload}


def _plain(metrics: dict) -> dict:
    """Metrics as JSON-safe values (NaN AP of a class without positives -> None)."""
    return {
        k: (
            [None if np.isnan(a) else a for a in v]
            if k == "AP"
            else (None if isinstance(v, float) and np.isnan(v) else v)
        )
        for k, v in metrics.items()
    }
