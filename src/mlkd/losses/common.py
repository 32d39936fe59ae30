"""Small helpers shared by the loss modules: full-precision math and input checks."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

_HALF = (torch.float16, torch.bfloat16)


def upcast(t: Tensor) -> Tensor:
    """``t`` in float32 when it is fp16/bf16; float32 and float64 are kept as they are."""
    return t.float() if t.dtype in _HALF else t


@contextmanager
def full_precision(*tensors: Tensor) -> Iterator[tuple[Tensor, ...]]:
    """Autocast off for the block; yields ``tensors`` upcast to at least float32.

    Distance, softmax and KL math is done in float32 (float64 stays float64) so the losses
    stay finite and accurate when the model runs under ``torch.autocast`` (fp16/bf16).
    """
    device_type = tensors[0].device.type if tensors else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        yield tuple(upcast(t) for t in tensors)


def check_same_shape(name: str, student: Tensor, teacher: Tensor) -> None:
    """Raise ValueError unless student and teacher tensors have the same shape."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student shape {tuple(student.shape)} != teacher shape "
            f"{tuple(teacher.shape)}; both must be the same"
        )


def check_targets(name: str, targets: Tensor, batch: int, classes: int) -> None:
    """Raise ValueError unless ``targets`` is [B, q] for the given B and q."""
    if targets.dim() != 2 or tuple(targets.shape) != (batch, classes):
        raise ValueError(f"{name}: targets must be [B, q] = [{batch}, {classes}], got {tuple(targets.shape)}")
