"""Models from configs and checkpoints (teacher loading with the class-list check)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mlkd.config import ModelConfig
from mlkd.engine.checkpoint import check_classes, load_checkpoint
from mlkd.errors import ConfigError


def model_from_config(cfg: ModelConfig, num_classes: int, pretrained: bool | str | None = None) -> nn.Module:
    """``build_model`` with the config's settings (``pretrained`` overrides the config's)."""
    from mlkd.models import build_model

    return build_model(
        cfg.name, num_classes,
        pretrained=cfg.pretrained if pretrained is None else pretrained,
        img_size=cfg.img_size, embed_dim=cfg.embed_dim, head=cfg.head,
        learnable_queries=cfg.learnable_queries, num_heads=cfg.num_heads,
        ffn_dim=cfg.ffn_dim, dropout=cfg.dropout, **cfg.options,
    )


def model_from_checkpoint(path: str | Path, device: torch.device) -> tuple[nn.Module, dict]:
    """Rebuild the network a checkpoint was trained as and load its weights (eval mode)."""
    state = load_checkpoint(path)
    model_cfg = ModelConfig.model_validate(state["config"]["model"])
    model = model_from_config(model_cfg, len(state["classes"]), pretrained=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def load_teacher(path: str | None, classes: list[str], device: torch.device) -> nn.Module:
    """A frozen teacher: eval mode, no gradients; its class list must equal ``classes``."""
    if not path:
        raise ConfigError("distill.teacher: this method needs a teacher checkpoint (distill.teacher=/path/to/last.pt)")
    if not Path(path).is_file():
        raise ConfigError(f"distill.teacher: file not found: {path}")
    teacher, state = model_from_checkpoint(path, device)
    check_classes(state["classes"], classes, f"teacher checkpoint {path}")
    teacher.requires_grad_(False)
    return teacher
