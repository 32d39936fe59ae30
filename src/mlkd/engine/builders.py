"""Models from configs and checkpoints (teacher loading with the class-list check)."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from mlkd.config import ModelConfig
from mlkd.engine.checkpoint import check_classes, checkpoint_file, load_checkpoint
from mlkd.errors import CheckpointError, ConfigError


def model_from_config(cfg: ModelConfig, num_classes: int, pretrained: bool | str | None = None) -> nn.Module:
    """``build_model`` with the config's settings (``pretrained`` overrides the config's).

    ``model.options`` go to ``timm.create_model``; one the model does not take is a ConfigError.
    The input normalisation follows the config's ``pretrained`` even when ``pretrained=False``
    overrides the weights (a checkpoint rebuilds without the weight package).
    """
    from mlkd.models import build_model, default_input_norm

    try:
        return build_model(
            cfg.name,
            num_classes,
            pretrained=cfg.pretrained if pretrained is None else pretrained,
            img_size=cfg.img_size,
            embed_dim=cfg.embed_dim,
            head=cfg.head,
            learnable_queries=cfg.learnable_queries,
            num_heads=cfg.num_heads,
            ffn_dim=cfg.ffn_dim,
            dropout=cfg.dropout,
            input_norm=default_input_norm(cfg.name, cfg.pretrained),
            **cfg.options,
        )
    except TypeError as err:
        if cfg.options and "unexpected keyword argument" in str(err):
            raise ConfigError(
                f"model.options {cfg.options}: {err}; remove the option or check the timm model's arguments"
            ) from None
        raise


def model_from_checkpoint(path: str | Path, device: torch.device) -> tuple[nn.Module, dict]:
    """Rebuild the network a checkpoint was trained as and load its weights (eval mode).

    A checkpoint whose model config, class list or weights do not fit together is a
    CheckpointError naming the file (not a KeyError / state-dict RuntimeError)."""
    state = load_checkpoint(path)
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or not state["classes"]:
        raise CheckpointError(
            f"checkpoint {path} lacks its model config or class list; it was not written by mlkd's trainer"
        )
    try:
        model_cfg = ModelConfig.model_validate(config["model"])
    except ValidationError as err:
        raise CheckpointError(
            f"checkpoint {path}: its model config is invalid ({' '.join(str(err).split())})"
        ) from None
    model = model_from_config(model_cfg, len(state["classes"]), pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit the model it names ({' '.join(str(err).split())[:300]})"
        ) from None
    return model.to(device).eval(), state


def load_teacher(path: str | None, classes: list[str], device: torch.device) -> nn.Module:
    """A frozen teacher: eval mode, no gradients; its class list must equal ``classes`` and its
    weights must be finite (checked once here, not per step)."""
    if not path:
        raise ConfigError("distill.teacher: this method needs a teacher checkpoint (distill.teacher=/path/to/last.pt)")
    if not checkpoint_file(path).is_file():
        raise ConfigError(
            f"distill.teacher: file not found: {checkpoint_file(path)} (a checkpoint file or the teacher's run folder)"
        )
    teacher, state = model_from_checkpoint(path, device)
    check_classes(state["classes"], classes, f"teacher checkpoint {path}")
    bad = [
        name
        for name, value in teacher.state_dict().items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:  # a diverged teacher would make every distillation loss NaN from the first step
        raise CheckpointError(
            f"teacher checkpoint {path} holds non-finite (NaN/inf) weights in "
            f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}; distil from a "
            "checkpoint of a healthy run"
        )
    teacher.requires_grad_(False)
    return teacher


def check_normalisation(model: nn.Module, data_normalize: bool, what: str) -> None:
    """A ConfigError when ``data.normalize`` would normalise the input of a ``model`` that
    normalises it itself (``MultiLabelNet.input_normalization``)."""
    spec = getattr(model, "input_normalization", None)
    if data_normalize and spec is not None:
        raise ConfigError(
            f"data.normalize=true but the {what} ({getattr(model, 'backbone_name', '?')}) "
            f"normalises its input itself (mean {spec[0]}, std {spec[1]}); set "
            "data.normalize=false so the input is not normalised twice"
        )
