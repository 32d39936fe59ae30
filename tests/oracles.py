"""Slow, obviously-correct loop versions of every loss, written straight from the
paper's definitions (and the official code's variant where the two differ).

Use them in float64 on small inputs. CD/ID loops live in the package
(``mlkd.losses.reference``, also used by the benchmark) and are re-exported here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mlkd.losses.reference import cd_loss_loop, id_loss_loop, led_loss_loop  # noqa: F401


def bce_oracle(logits: Tensor, targets: Tensor, reduction: str = "sum") -> Tensor:
    total = logits.new_zeros(())
    for i in range(logits.shape[0]):
        for k in range(logits.shape[1]):
            p = torch.sigmoid(logits[i, k])
            y = targets[i, k]
            total = total - (y * torch.log(p) + (1 - y) * torch.log(1 - p))
    return total if reduction == "sum" else total / logits.shape[0]


def mld_oracle(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    eps = 1e-8
    total = student.new_zeros(())
    for i in range(student.shape[0]):
        for k in range(student.shape[1]):
            ps = torch.sigmoid(student[i, k] / temperature).clamp(eps, 1 - eps)
            pt = torch.sigmoid(teacher[i, k].detach() / temperature).clamp(eps, 1 - eps)
            total = total + pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))
    return total / student.shape[0] * temperature**2


def ps_oracle(student: Tensor, teacher: Tensor, targets: Tensor) -> Tensor:
    total = student.new_zeros(())
    for i in range(student.shape[0]):
        pos = [k for k in range(student.shape[1]) if targets[i, k] > 0.5]
        neg = [k for k in range(student.shape[1]) if targets[i, k] <= 0.5]
        for p in pos:
            group = [p] + neg
            s = torch.softmax(student[i, group], dim=0)
            t = torch.softmax(teacher[i, group].detach(), dim=0)
            total = total + (t * (torch.log(t) - torch.log(s))).sum()
    return total / student.shape[0]


def mse_oracle(student: Tensor, teacher: Tensor) -> Tensor:
    total = student.new_zeros(())
    for i in range(student.shape[0]):
        for k in range(student.shape[1]):
            total = total + (student[i, k] - teacher[i, k].detach()) ** 2
    return total / student.numel()


def _distance(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b) ** 2).sum().clamp(min=1e-12).sqrt()


def _smooth_l1(x: Tensor) -> Tensor:
    return 0.5 * x**2 if abs(x.item()) < 1 else x.abs() - 0.5


def _rkd_distance_oracle(s: Tensor, t: Tensor) -> Tensor:
    n = len(s)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    ds = {p: _distance(s[p[0]], s[p[1]]) for p in pairs}
    dt = {p: _distance(t[p[0]], t[p[1]]) for p in pairs}
    mean_s, mean_t = sum(ds.values()) / len(pairs), sum(dt.values()) / len(pairs)
    total = sum(_smooth_l1(ds[p] / mean_s - dt[p] / mean_t) for p in pairs)
    return total / n**2  # the n diagonal entries are 0 - 0


def _cosine_at(x: Tensor, j: int, i: int, k: int) -> Tensor:
    u, v = x[i] - x[j], x[k] - x[j]
    nu, nv = u.norm(), v.norm()
    if nu.item() == 0 or nv.item() == 0:
        return x.new_zeros(())
    return (u * v).sum() / (nu * nv)


def rkd_oracle(s: Tensor, t: Tensor, distance_weight: float = 25.0, angle_weight: float = 50.0) -> Tensor:
    t = t.detach()
    n = len(s)
    angle = (
        sum(
            _smooth_l1(_cosine_at(s, j, i, k) - _cosine_at(t, j, i, k))
            for j in range(n)
            for i in range(n)
            for k in range(n)
        )
        / n**3
    )
    return distance_weight * _rkd_distance_oracle(s, t) + angle_weight * angle


def pkt_oracle(s: Tensor, t: Tensor, eps: float = 1e-7, reduction: str = "mean") -> Tensor:
    def probabilities(x: Tensor) -> list[list[Tensor]]:
        unit = [row / (row.norm() + eps) for row in x]
        kernel = [[((a * b).sum() + 1) / 2 for b in unit] for a in unit]
        return [[v / sum(row) for v in row] for row in kernel]

    ps, pt = probabilities(s), probabilities(t.detach())
    n = len(s)
    total = sum(pt[i][j] * torch.log((pt[i][j] + eps) / (ps[i][j] + eps)) for i in range(n) for j in range(n))
    return total / n**2 if reduction == "mean" else total


def adaptive_pool_oracle(x: Tensor, size: int) -> Tensor:
    """[B, C, H, W] -> [B, C, size, size], bins [floor(i H / s), ceil((i + 1) H / s))."""
    h, w = x.shape[-2:]
    rows = []
    for i in range(size):
        r0, r1 = (i * h) // size, math.ceil((i + 1) * h / size)
        cols = []
        for j in range(size):
            c0, c1 = (j * w) // size, math.ceil((j + 1) * w / size)
            cols.append(x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)))
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def hcl_oracle(student_feats: list[Tensor], teacher_feats: list[Tensor]) -> Tensor:
    total = student_feats[0].new_zeros(())
    for fs, ft in zip(student_feats, teacher_feats):
        terms = [(1.0, ((fs - ft.detach()) ** 2).mean())]
        weight = 1.0
        for level in (4, 2, 1):
            if level < fs.shape[2]:
                weight /= 2
                diff = adaptive_pool_oracle(fs, level) - adaptive_pool_oracle(ft.detach(), level)
                terms.append((weight, (diff**2).mean()))
        total = total + sum(w * v for w, v in terms) / sum(w for w, _ in terms)
    return total
