"""Logit-based losses: BCE (hard labels), MLD (L2D), PS (partial softmax) and logit MSE.

All take logits [B, q]; teacher logits are treated as constants (detached). The math runs in
float32 at least with autocast off, so fp16/bf16 logits give finite, accurate values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mlkd.losses.common import check_same_shape, full_precision

MLD_EPS = 1e-8
# Clamping a probability to [eps, 1 - eps] is clamping its logit to [-c, c], c = logit(1 - eps).
_MLD_LOGIT_BOUND = math.log((1.0 - MLD_EPS) / MLD_EPS)
# A finite stand-in for -inf: exp() of it is exactly 0, and it never produces inf - inf = NaN.
_MASKED = -1e30


def bce_loss(logits: Tensor, targets: Tensor, reduction: str = "sum") -> Tensor:
    """Binary cross-entropy with hard labels. logits [B, q], targets [B, q] in {0, 1}.

    reduction "sum" (default; the official code, which produced the published numbers): summed
    over batch and classes. "mean": the same sum divided by B (the paper text's mean over the
    batch of per-image sums). Computed stably from logits (float32 at least, relative error
    ~1e-7 at any logit). The official code instead computes log(clamp(p, 1e-8)) and
    log(clamp(1 - p, 1e-8)) from p = sigmoid(z) in float32, which differs at large |z|,
    asymmetrically (measured in tests/test_bce_boundary.py):

    - negative label, z > 0: 1 - p cancels in float32; its loss is off by more than 0.1 from
      z ~ 14.4 and by more than 0.5 from z ~ 16.4, and from z ~ 16.64 (where p rounds to 1)
      it is the clamp's constant -log(1e-8) = 18.42 instead of ~z;
    - positive label, z < 0: p itself is accurate, so only the clamp acts, below z ~ -18.42.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"bce_loss: reduction must be 'sum' or 'mean', got {reduction!r}")
    check_same_shape("bce_loss", logits, targets)
    with full_precision(logits, targets) as (z, y):
        loss = F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="sum")
        return loss if reduction == "sum" else loss / z.shape[0]


def mld_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Multi-label logits distillation: per-label Bernoulli KL(teacher || student).

    student_logits, teacher_logits [B, q] -> scalar: summed over labels, averaged over the
    batch. Probabilities are clamped to [1e-8, 1 - 1e-8] (done exactly, as a clamp of the
    logits to +-logit(1 - 1e-8), then log-sigmoid: stable even in float32, where 1 - 1e-8
    rounds to 1). With a temperature T, logits are divided by T before the sigmoid and the
    loss is multiplied by T**2 (as in Hinton et al.) so gradient scales match T = 1; the paper
    uses T = 1.
    """
    check_same_shape("mld_loss", student_logits, teacher_logits)
    with full_precision(student_logits, teacher_logits.detach()) as (zs, zt):
        bound = _MLD_LOGIT_BOUND
        zs = (zs / temperature).clamp(-bound, bound)
        zt = (zt / temperature).clamp(-bound, bound)
        log_ps, log_ns = F.logsigmoid(zs), F.logsigmoid(-zs)
        log_pt, log_nt = F.logsigmoid(zt), F.logsigmoid(-zt)
        kl = log_pt.exp() * (log_pt - log_ps) + log_nt.exp() * (log_nt - log_ns)
        return kl.sum() / zs.shape[0] * temperature**2


def _partial_softmax_parts(z: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
    """z [B, q] -> (log-sum-exp over negatives [B, 1], log(e^z_p + sum_n e^z_n) [B, q])."""
    lse_neg = torch.logsumexp(z.masked_fill(pos, _MASKED), dim=1, keepdim=True)
    return lse_neg, torch.logaddexp(z, lse_neg)


def ps_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> Tensor:
    """Partial softmax distillation (Song et al. 2021), vectorised.

    For each positive label p of image i, a softmax over {z_p} U {z_n : n negative for i};
    KL(teacher softmax || student softmax) summed over positives, averaged over the batch.
    student_logits, teacher_logits, targets [B, q] -> scalar; positives are targets > 0.5.

    Closed form used (no [B, q, q] tensor): with lse_p the log-normaliser of group p,
    t_p the teacher probability of p, w_p = 1 - t_p (teacher mass on the negatives, computed
    as exp(lse_neg - lse_p)) and c = sum_n softmax_neg(teacher)_n (zt_n - zs_n),
    KL_p = t_p (zt_p - zs_p) + w_p c - (lseT_p - lseS_p). An image whose labels are all
    positive has one-element groups and contributes 0.
    """
    check_same_shape("ps_loss", student_logits, teacher_logits)
    check_same_shape("ps_loss", student_logits, targets)
    with full_precision(student_logits, teacher_logits.detach()) as (zs, zt):
        pos = targets > 0.5
        lse_neg_t, lse_t = _partial_softmax_parts(zt, pos)
        _, lse_s = _partial_softmax_parts(zs, pos)
        neg_softmax_t = torch.exp(zt.masked_fill(pos, _MASKED) - lse_neg_t)
        c = (neg_softmax_t * (zt - zs)).sum(dim=1, keepdim=True)
        t_p = torch.exp(zt - lse_t)
        w_p = torch.exp(lse_neg_t - lse_t)
        kl = t_p * (zt - zs) + w_p * c - (lse_t - lse_s)
        return torch.where(pos, kl, torch.zeros_like(kl)).sum() / zs.shape[0]


def logits_mse_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared error between logits [B, q] (mean over all B*q entries) -> scalar."""
    check_same_shape("logits_mse_loss", student_logits, teacher_logits)
    with full_precision(student_logits, teacher_logits.detach()) as (zs, zt):
        return F.mse_loss(zs, zt, reduction="mean")
