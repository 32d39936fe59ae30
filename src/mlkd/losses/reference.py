"""Slow, obviously-correct loop versions of CD and ID (the paper's class- and
instance-aware label-wise embedding distillation), for tests and benchmarks.

Written straight from the definition: a Python loop over classes (CD) or images (ID), the
full n x n distance matrix of each group, no shared work. ``mlkd.losses.embedding`` is the
fast implementation; these exist to check it (tests/oracles.py) and to time it
(``python -m mlkd.bench losses``). Do not use them for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def group_distance_matrix(emb: Tensor) -> Tensor:
    """[n, D] -> [n, n] Euclidean distances sqrt(clamp(squared, 1e-12)), diagonal 0."""
    diff = emb[:, None, :] - emb[None, :, :]
    dist = (diff * diff).sum(-1).clamp(min=1e-12).sqrt()
    return dist * (1 - torch.eye(len(emb), dtype=dist.dtype, device=dist.device))


def group_loss(student: Tensor, teacher: Tensor, variant: str) -> Tensor:
    """Huber (delta 1) between the distance matrices of one group: [n, D], [n, D'] -> scalar."""
    n = len(student)
    d_s = group_distance_matrix(student)
    d_t = group_distance_matrix(teacher.detach())
    if variant == "paper":
        return F.smooth_l1_loss(d_s, d_t, reduction="sum", beta=1.0)
    off_diagonal = n * (n - 1)
    d_s = d_s / (d_s.sum() / off_diagonal)
    d_t = d_t / (d_t.sum() / off_diagonal)
    return F.smooth_l1_loss(d_s, d_t, reduction="sum", beta=1.0) / n


def cd_loss_loop(student: Tensor, teacher: Tensor, targets: Tensor, variant: str = "official") -> Tensor:
    """CD by a loop over classes. student [B, q, D], teacher [B, q, D'], targets [B, q]."""
    total = student.new_zeros(())
    for k in range(targets.shape[1]):
        idx = (targets[:, k] > 0.5).nonzero().squeeze(1)
        if len(idx) >= 2:
            total = total + group_loss(student[idx, k], teacher[idx, k], variant)
    return total


def id_loss_loop(student: Tensor, teacher: Tensor, targets: Tensor, variant: str = "official") -> Tensor:
    """ID by a loop over images. student [B, q, D], teacher [B, q, D'], targets [B, q]."""
    total = student.new_zeros(())
    for i in range(targets.shape[0]):
        idx = (targets[i] > 0.5).nonzero().squeeze(1)
        if len(idx) >= 2:
            total = total + group_loss(student[i, idx], teacher[i, idx], variant)
    return total


def led_loss_loop(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor,
    cd_weight: float = 100.0,
    id_weight: float = 1000.0,
    variant: str = "official",
) -> Tensor:
    """cd_weight * CD + id_weight * ID by the two loops above."""
    return cd_weight * cd_loss_loop(student, teacher, targets, variant) + id_weight * id_loss_loop(
        student, teacher, targets, variant
    )
