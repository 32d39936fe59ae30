"""ModelOutput: what every mlkd model returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class ModelOutput:
    """The outputs of a multi-label network for a batch of B images and q classes.

    logits:           [B, q] per-class logits z_k.
    label_embeddings: [B, q, D] label-wise embeddings E (None for a plain linear head).
    pooled:           [B, F] global-average-pooled last backbone feature map.
    features:         list of stage feature maps, each [B, C_s, H_s, W_s] (NCHW).
    attention:        [B, q, T] head cross-attention weights over the T feature tokens
                      (averaged over heads), or None when not requested / not available.
    """

    logits: torch.Tensor
    label_embeddings: Optional[torch.Tensor]
    pooled: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)
    attention: Optional[torch.Tensor] = None
