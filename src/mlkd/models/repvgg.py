"""RepVGG deploy form: fuse the 3x3 / 1x1 / identity branches (+ BN) into one 3x3 conv.

Uses timm's own mechanism (``timm.models.reparameterize_model``, which calls each block's
``reparameterize()``), so any timm block that supports re-parameterisation (RepVGG, MobileOne,
FastViT, ...) is covered. Fusion uses BN running statistics: the deploy form equals the
training form in eval mode only, and it cannot be trained further the same way.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def can_reparameterize(model: nn.Module) -> bool:
    """Whether any submodule of ``model`` has a ``reparameterize`` / ``switch_to_deploy`` method."""
    return any(
        hasattr(m, "reparameterize") or hasattr(m, "switch_to_deploy") for m in model.modules() if m is not model
    )


def deploy(model: M, inplace: bool = True) -> M:
    """The deploy form of ``model`` (eval mode); a no-op for networks without RepVGG-style blocks.

    For an mlkd ``MultiLabelNet`` only the backbone is fused (the head has nothing to fuse).
    ``inplace=False`` fuses a deep copy and leaves ``model`` unchanged.
    """
    from timm.models import reparameterize_model

    target = getattr(model, "backbone", model)
    if not inplace:
        import copy

        model = copy.deepcopy(model)
        target = getattr(model, "backbone", model)
    reparameterize_model(target, inplace=True)
    return model.eval()
