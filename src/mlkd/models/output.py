"""ModelOutput: what every mlkd model returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class ModelOutput:
    """The outputs of a multi-label network for a batch of B images and q classes.

    Only ``logits`` is required: give the fields the chosen loss terms read (L2D: logits and
    label_embeddings; RKD / PKT: pooled; ReviewKD: features); a term whose field is missing
    raises a ValueError naming the term and the field.

    logits:           [B, q] per-class logits z_k.
    label_embeddings: [B, q, D] label-wise embeddings E (None for a plain linear head).
    pooled:           [B, F] global-average-pooled last backbone feature map (None: not given).
    features:         list of stage feature maps, each [B, C_s, H_s, W_s] (NCHW; empty: not given).
    attention:        [B, q, T] head cross-attention weights over the T feature tokens
                      (averaged over heads), or None when not requested / not available.
    """

    logits: torch.Tensor
    label_embeddings: Optional[torch.Tensor] = None
    pooled: Optional[torch.Tensor] = None
    features: list[torch.Tensor] = field(default_factory=list)
    attention: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class OutputShapes:
    """The sizes of a model's :class:`ModelOutput` (None where unknown or absent).

    num_classes: q; embed_dim: D of ``label_embeddings`` (None for a plain linear head);
    pooled_dim: F of ``pooled``; stage_channels: C_s of each map in ``features``.
    """

    num_classes: Optional[int] = None
    embed_dim: Optional[int] = None
    pooled_dim: Optional[int] = None
    stage_channels: Optional[tuple[int, ...]] = None


def output_shapes(model: Optional[torch.nn.Module]) -> Optional[OutputShapes]:
    """The :class:`OutputShapes` of ``model`` from its ``num_classes``, ``embed_dim``,
    ``pooled_dim`` and ``feature_channels`` attributes (as :class:`MultiLabelNet` has them;
    missing ones are None); None for no model."""
    if model is None:
        return None
    channels = getattr(model, "feature_channels", None)
    return OutputShapes(
        getattr(model, "num_classes", None),
        getattr(model, "embed_dim", None),
        getattr(model, "pooled_dim", None),
        None if channels is None else tuple(int(c) for c in channels),
    )
