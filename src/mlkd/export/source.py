"""A trained model ready to export: a run folder or checkpoint, loaded by the engine's loader.

``load_student(path)`` rebuilds the network from the checkpoint's own config
(``mlkd.engine.builders.model_from_checkpoint``: a run folder means its ``checkpoints/last.pt``),
keeps the training-form weights (what a safetensors export stores), fuses RepVGG-style branches
for inference and attaches the thresholds ``mlkd calibrate`` stored beside the checkpoint
(0.5 for every label when there are none).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from mlkd.calibration import DEFAULT_THRESHOLD
from mlkd.export.graph import InferenceNet


@dataclass
class Student:
    """What an export needs. ``net``: the InferenceNet (eval, fused); ``weights``: the
    training-form state dict; ``config``: the checkpoint's Config; ``img_size``: the side the
    run's eval transform resizes images to; ``data_norm``: the data pipeline's (mean, std) or
    None; ``thresholds`` [q] and where they come from."""

    net: InferenceNet
    weights: dict[str, torch.Tensor]
    classes: list[str]
    config: Any
    img_size: int
    data_norm: Optional[tuple]
    thresholds: list[float]
    threshold_source: str
    weights_sha256: str
    checkpoint: Path
    epoch: int

    @property
    def model_config(self) -> dict:
        return self.config.model.model_dump(mode="json")


def data_normalisation(cfg) -> Optional[tuple]:
    """(mean, std) the run's data pipeline applied (``data.normalize``), else None."""
    if not cfg.data.normalize:
        return None
    from mlkd.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)


def load_student(path: str | Path) -> Student:
    """The model of a run folder or checkpoint file, on CPU, ready to export."""
    from mlkd.engine.builders import model_from_checkpoint
    from mlkd.engine.calibrate import stored_thresholds, weights_digest
    from mlkd.engine.checkpoint import checkpoint_file
    from mlkd.engine.evaluation import saved_config

    model, state = model_from_checkpoint(path, torch.device("cpu"))
    cfg = saved_config(state, str(path))
    weights = copy.deepcopy(model.state_dict())
    model.reparameterize()
    stored = stored_thresholds(path, state, required=False)
    classes = list(state["classes"])
    if stored is not None:
        thresholds = [float(t) for t in stored["thresholds"]]
        val = stored.get("validation", {})
        source = (
            f"calibrated on data.holdout={val.get('fraction')} ({val.get('images')} images; "
            f"{stored['rules'].count('f1')} labels by F1, the others {DEFAULT_THRESHOLD})"
        )
    else:
        thresholds, source = [DEFAULT_THRESHOLD] * len(classes), f"default {DEFAULT_THRESHOLD} (not calibrated)"
    return Student(
        net=InferenceNet(model, data_normalisation(cfg)),
        weights=weights,
        classes=classes,
        config=cfg,
        img_size=int(cfg.data.img_size),
        data_norm=data_normalisation(cfg),
        thresholds=thresholds,
        threshold_source=source,
        weights_sha256=weights_digest(state),
        checkpoint=checkpoint_file(path),
        epoch=int(state["epoch"]),
    )


def student_from_model(model: torch.nn.Module, classes: list[str], config, thresholds=None) -> Student:
    """A Student of an in-memory mlkd network built with ``config`` (a Config: its model section
    rebuilds it, ``data.img_size`` is the input side); fused in place, eval mode."""
    weights = copy.deepcopy(model.state_dict())
    model.eval().reparameterize()
    q = len(classes)
    return Student(
        net=InferenceNet(model, data_normalisation(config)),
        weights=weights,
        classes=list(classes),
        config=config,
        img_size=int(config.data.img_size),
        data_norm=data_normalisation(config),
        thresholds=list(thresholds) if thresholds is not None else [DEFAULT_THRESHOLD] * q,
        threshold_source="given" if thresholds is not None else f"default {DEFAULT_THRESHOLD}",
        weights_sha256="-",
        checkpoint=Path("memory"),
        epoch=0,
    )


def fixed_batch(batch: int, img_size: int, seed: int = 0) -> torch.Tensor:
    """A reproducible batch [batch, 3, S, S] of uniform [0, 1] images (the parity check's input)."""
    return torch.rand(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
