"""Optimiser and schedule of the official recipe: Adam(W), decay on weights only, OneCycleLR."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from mlkd.config import OptimConfig
from mlkd.registries import OPTIMIZERS

OPTIMIZERS.add("adam", torch.optim.Adam)  # L2 decay added to the gradient (the official code)
OPTIMIZERS.add("adamw", torch.optim.AdamW)  # decoupled decay (the paper's text)


def param_groups(
    modules: Iterable[nn.Module], weight_decay: float, lr: float = 1.0, head_lr_scale: float = 1.0
) -> list[dict]:
    """Groups with their ``weight_decay`` and ``lr``: matrices/kernels get ``weight_decay``;
    biases, norms and 1-d params get none. With ``head_lr_scale != 1`` every parameter outside a
    module's ``backbone`` attribute (the label-wise head, a method's own layers) gets
    ``lr * head_lr_scale`` in groups of its own; otherwise there are two groups."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for module in modules:
        backbone = getattr(module, "backbone", None) if head_lr_scale != 1.0 else None
        in_backbone = {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
        for param in module.parameters():
            if not param.requires_grad:
                continue
            new = head_lr_scale != 1.0 and id(param) not in in_backbone
            groups.setdefault((new, param.ndim > 1), []).append(param)
    out = []
    for new in (False, True):
        for decays in (True, False):
            params = groups.get((new, decays), [])
            if params or not new:
                out.append(
                    {
                        "params": params,
                        "weight_decay": weight_decay if decays else 0.0,
                        "lr": lr * (head_lr_scale if new else 1.0),
                    }
                )
    return out


def build_optimizer(modules: Iterable[nn.Module], cfg: OptimConfig, fused: bool | None = None) -> torch.optim.Optimizer:
    """``adam``: L2 decay added to the gradient (official); ``adamw``: decoupled decay (paper).

    ``fused``: the fused implementation (one kernel per step, and it can skip a step on the
    device through ``found_inf`` without a host sync); None: fused when every parameter is
    on CUDA, torch's default implementation otherwise (bit-stable CPU results).
    """
    groups = param_groups(modules, cfg.weight_decay, cfg.lr, cfg.head_lr_scale)
    if fused is None:
        params = [p for group in groups for p in group["params"]]
        fused = bool(params) and all(p.is_cuda for p in params)
    cls = OPTIMIZERS.get(cfg.name, "optim.name")
    return cls(groups, lr=cfg.lr, fused=True) if fused else cls(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int):
    """OneCycleLR over the *scheduled* epochs (``epochs``), even when ``stop_epoch`` ends early;
    each parameter group peaks at its own ``lr`` (``optim.lr``, times ``head_lr_scale`` outside
    the backbone).

    When ``pct_start x epochs x steps_per_epoch`` is exactly 1 (e.g. 5 steps, pct_start 0.2)
    torch's warm-up phase has zero length and its schedule divides by zero; the warm-up is then
    lengthened by a millionth of a step, so step 0 starts the warm-up (``lr / div_factor``) as
    in every other schedule and the rest follows the cosine within 1e-6 of a step.
    """
    steps_per_epoch = max(1, steps_per_epoch)
    pct_start, total = cfg.pct_start, cfg.epochs * steps_per_epoch
    if float(pct_start * total) - 1 == 0:
        pct_start = (1 + 1e-6) / total
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=pct_start,
    )
