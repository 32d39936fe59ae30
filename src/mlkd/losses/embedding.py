"""CD and ID: class- and instance-aware label-wise embedding distillation (the two
embedding terms of the paper's L2D).

Both losses compare, group by group, the pairwise Euclidean distances among positive
label-wise embeddings of the student with those of the teacher (Huber loss, delta 1):

- CD: one group per class k, the embeddings E[i, k] of the images i positive for k; summed
  over classes.
- ID: one group per image i, the embeddings E[i, k] of its positive labels k; summed over
  images.

Variants:

- ``"official"`` (default, the official code's, which produced the paper's tables): each group's distance
  matrix is divided by the mean of its off-diagonal entries (teacher and student separately);
  the Huber terms are summed over all n x n entries and divided by n. A group of two positives
  therefore contributes exactly zero loss and zero gradient.
- ``"paper"``: as the paper's equations are written: raw distances, Huber summed over ordered pairs, no 1/n.

Groups with fewer than two positives are skipped in both variants. A distance is
``sqrt(clamp(squared distance, 1e-12))`` with the diagonal 0, so gradients stay finite when
two embeddings coincide.

How it is fast: no loop over classes or images. The positives are listed as contiguous
groups (CD groups by class, then ID groups by image) and all unordered pairs (a < b) of all
groups are enumerated at once with ``repeat_interleave``. Distances are computed only for
those pairs, by direct differences (exact zeros, no cancellation), in blocks of 512 pairs by
a custom autograd function that recomputes the differences in its backward rather than
storing them (no Python work per class or image; the block loop only bounds memory).
Per-group means and sums are ``index_add`` reductions. Diagonal entries (zero in both
matrices) and the mirrored half of each symmetric matrix are never formed: an unordered pair
stands for its two ordered entries. The math runs in float32 at least, autocast off.

Host synchronisation: the number of pairs depends on the labels, so enumerating them on an
accelerator needs the host to read sizes back (``nonzero``, ``repeat_interleave``). A
:class:`PairPlan` built on the host from the host copy of the labels (``pair_plan``; the
training engine passes the loader's CPU targets) removes every sync: the plan's index tensors
are copied to the device in one non-blocking transfer, and the loss itself then launches only
kernels. Without a plan the functions build one from ``targets`` where they are (a few syncs
on an accelerator, none on CPU). A dense formulation without data-dependent sizes would cost
O(q B^2 D) per call instead of O(pairs x D).

A positive is a target > 0.5. Student and teacher embedding widths may differ (only
distances are compared). The teacher embeddings are treated as constants (no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from mlkd.losses.common import full_precision

VARIANTS = ("official", "paper")
_MIN_DIST = 1e-6  # sqrt of the 1e-12 clamp on squared distances
_CHUNK = 512  # pairs per block of differences


def _check(student: Tensor, teacher: Tensor, targets: Tensor, variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"CD/ID variant must be one of {VARIANTS}, got {variant!r}")
    if student.dim() != 3 or teacher.dim() != 3 or student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            "CD/ID: embeddings must be [B, q, D] with the same B and q for student and teacher, "
            f"got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    if tuple(targets.shape) != tuple(student.shape[:2]):
        raise ValueError(f"CD/ID: targets must be [B, q] = {list(student.shape[:2])}, got {list(targets.shape)}")


def _groups(pos: Tensor, with_cd: bool, with_id: bool) -> tuple[Tensor, Tensor]:
    """Positives of ``pos`` [B, q] (bool) listed as contiguous groups.

    Returns (members [M]: flat index b*q+k of each positive, CD groups (by class, images in
    order) first, then ID groups (by image, classes in order); counts [G]: group sizes,
    q class groups if ``with_cd`` then B image groups if ``with_id``).
    """
    B, q = pos.shape
    members, counts = [], []
    if with_cd:
        by_class = pos.t().reshape(-1).nonzero().squeeze(1)  # k * B + b
        members.append(by_class % B * q + by_class // B)
        counts.append(pos.sum(0))
    if with_id:
        members.append(pos.reshape(-1).nonzero().squeeze(1))  # b * q + k
        counts.append(pos.sum(1))
    return torch.cat(members), torch.cat(counts)


def _unordered_pairs(counts: Tensor, n_members: int) -> tuple[Tensor, Tensor, Tensor]:
    """All pairs (a, b), a < b, of members in the same contiguous group.

    counts [G] (long) are group sizes summing to ``n_members``.
    Returns (first [N], second [N], group [N]); first/second index the member list.
    """
    dev = counts.device
    group_of = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts, output_size=n_members)
    start = counts.cumsum(0) - counts
    rank = torch.arange(n_members, device=dev) - start[group_of]
    n_after = counts[group_of] - 1 - rank  # members after this one in its group
    first = torch.repeat_interleave(torch.arange(n_members, device=dev), n_after)
    offset = torch.arange(first.numel(), device=dev) - (n_after.cumsum(0) - n_after)[first]
    return first, first + 1 + offset, group_of[first]


class _PairDistances(torch.autograd.Function):
    """||emb[a] - emb[b]|| clamped below at 1e-6 (= sqrt(clamp(squared, 1e-12))).

    emb [R, D] (R rows, here B*q), a/b [N] -> [N]. The [N, D] differences are formed in
    chunks of pairs and recomputed in the backward instead of being stored, so memory stays
    O(chunk x D) and no large buffer is allocated (allocation, not arithmetic, dominated on
    CPU). The gradient is 0 where the distance is clamped (coinciding embeddings).
    """

    @staticmethod
    def forward(ctx, emb: Tensor, a: Tensor, b: Tensor) -> Tensor:
        dist = emb.new_empty(a.shape[0])
        for sl in _chunks(a.shape[0]):
            diff = emb.index_select(0, a[sl]).sub_(emb.index_select(0, b[sl]))
            torch.linalg.vector_norm(diff, dim=1, out=dist[sl])
        dist.clamp_(min=_MIN_DIST)
        ctx.save_for_backward(emb, dist, a, b)
        return dist

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        emb, dist, a, b = ctx.saved_tensors
        coef = torch.where(dist > _MIN_DIST, grad / dist, torch.zeros_like(dist))
        out = torch.zeros_like(emb)
        for sl in _chunks(a.shape[0]):
            diff = emb.index_select(0, a[sl]).sub_(emb.index_select(0, b[sl]))
            diff.mul_(coef[sl, None])
            out.index_add_(0, a[sl], diff).index_add_(0, b[sl], diff, alpha=-1)
        return out, None, None


def _chunks(n: int) -> list[slice]:
    """Slices of at most _CHUNK pairs covering range(n) (a loop over pair blocks only)."""
    return [slice(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)] or [slice(0, 0)]


def _pair_distances(emb: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """||emb[a] - emb[b]|| for emb [R, D], a/b [N] -> [N], sqrt of the clamped square."""
    return _PairDistances.apply(emb, a, b)


def _normalised(d: Tensor, group: Tensor, n_pairs: Tensor) -> Tensor:
    """Divide each pair distance by the mean off-diagonal distance of its group."""
    sums = torch.zeros_like(n_pairs).index_add_(0, group, d)
    return d / (sums / n_pairs.clamp(min=1))[group]


@dataclass(frozen=True)
class PairPlan:
    """The groups and unordered pairs of one label matrix [B, q] (see :func:`pair_plan`).

    a, b [N] (long): flat rows ``i * q + k`` of the two members of each pair; group [N]: the
    pair's group; counts [G]: group sizes (q class groups if ``with_cd``, then B image groups
    if ``with_id``). ``shape`` is (B, q).
    """

    a: Tensor
    b: Tensor
    group: Tensor
    counts: Tensor
    shape: tuple[int, int]
    with_cd: bool
    with_id: bool

    def to(self, device: torch.device | str) -> PairPlan:
        """The plan on ``device``: one non-blocking copy (from pinned memory to CUDA)."""
        device = torch.device(device)
        if self.a.device == device:
            return self
        sizes = [self.a.numel(), self.b.numel(), self.group.numel(), self.counts.numel()]
        packed = torch.cat([self.a, self.b, self.group, self.counts])
        if device.type == "cuda" and not packed.is_pinned():
            packed = packed.pin_memory()
        a, b, group, counts = packed.to(device, non_blocking=True).split(sizes)
        return PairPlan(a, b, group, counts, self.shape, self.with_cd, self.with_id)


@torch.compiler.disable
def pair_plan(targets: Tensor, with_cd: bool = True, with_id: bool = True) -> PairPlan:
    """Groups and pairs of the positives (targets > 0.5) of ``targets`` [B, q], where they are.

    Build it from a CPU copy of the labels and move it with ``PairPlan.to`` to keep the loss
    free of host synchronisation on an accelerator. Runs eagerly under ``torch.compile``.
    """
    if targets.dim() != 2:
        raise ValueError(f"CD/ID: targets must be [B, q], got {list(targets.shape)}")
    B, q = targets.shape
    members, counts = _groups(targets.detach() > 0.5, with_cd, with_id)
    first, second, group = _unordered_pairs(counts, members.numel())
    return PairPlan(members[first], members[second], group, counts, (B, q), with_cd, with_id)


def _check_plan(plan: PairPlan, targets: Tensor, with_cd: bool, with_id: bool) -> PairPlan:
    if plan.shape != tuple(targets.shape) or plan.with_cd != with_cd or plan.with_id != with_id:
        raise ValueError(
            f"CD/ID: the pair plan was built for targets {list(plan.shape)} with "
            f"cd={plan.with_cd}, id={plan.with_id}; this call needs "
            f"{list(targets.shape)} with cd={with_cd}, id={with_id}"
        )
    return plan.to(targets.device)


@torch.compiler.disable
def _group_losses(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor,
    variant: str,
    with_cd: bool,
    with_id: bool,
    plan: PairPlan | None = None,
) -> Tensor:
    """Huber loss of every group, [G] (q class groups then B image groups, as requested).

    Runs eagerly under ``torch.compile`` (its sizes depend on the labels: compiling it would
    recompile for every batch).
    """
    _check(student, teacher, targets, variant)
    B, q = targets.shape
    if plan is None:
        plan = pair_plan(targets, with_cd, with_id)
    else:
        plan = _check_plan(plan, targets, with_cd, with_id)
    with full_precision(student, teacher.detach()) as (s, t):
        counts, group, a, b = plan.counts, plan.group, plan.a, plan.b
        d_s = _pair_distances(s.reshape(B * q, -1), a, b)
        with torch.no_grad():
            d_t = _pair_distances(t.reshape(B * q, -1), a, b)
        size = counts.to(d_s.dtype)
        if variant == "official":
            n_pairs = size * (size - 1) / 2
            d_s, d_t = _normalised(d_s, group, n_pairs), _normalised(d_t, group, n_pairs)
        huber = F.smooth_l1_loss(d_s, d_t, reduction="none", beta=1.0)
        # x2: each unordered pair stands for the two symmetric entries of the n x n matrix.
        scale = 2.0 / size.clamp(min=1) if variant == "official" else torch.full_like(size, 2.0)
        return torch.zeros_like(size).index_add_(0, group, huber * scale[group])


def cd_id_losses(
    student_emb: Tensor, teacher_emb: Tensor, targets: Tensor, variant: str = "official", plan: PairPlan | None = None
) -> tuple[Tensor, Tensor]:
    """(CD, ID) computed together in one pass (shared positives, pairs and distances).

    student_emb [B, q, D], teacher_emb [B, q, D'] (constant), targets [B, q] 0/1; ``plan``:
    ``pair_plan(targets_on_host)`` (optional; avoids host syncs on an accelerator).
    Returns two scalar tensors (float32, or float64 for float64 inputs).
    """
    q = targets.shape[1]
    losses = _group_losses(student_emb, teacher_emb, targets, variant, True, True, plan)
    return losses[:q].sum(), losses[q:].sum()


def cd_loss(
    student_emb: Tensor, teacher_emb: Tensor, targets: Tensor, variant: str = "official", plan: PairPlan | None = None
) -> Tensor:
    """Class-aware distillation: Huber between distance matrices per class, summed over classes.

    student_emb [B, q, D], teacher_emb [B, q, D'], targets [B, q] -> scalar; ``plan``:
    ``pair_plan(targets, with_cd=True, with_id=False)`` (optional).
    """
    return _group_losses(student_emb, teacher_emb, targets, variant, True, False, plan).sum()


def id_loss(
    student_emb: Tensor, teacher_emb: Tensor, targets: Tensor, variant: str = "official", plan: PairPlan | None = None
) -> Tensor:
    """Instance-aware distillation: Huber between distance matrices per image, summed over images.

    student_emb [B, q, D], teacher_emb [B, q, D'], targets [B, q] -> scalar; ``plan``:
    ``pair_plan(targets, with_cd=False, with_id=True)`` (optional).
    """
    return _group_losses(student_emb, teacher_emb, targets, variant, False, True, plan).sum()


def led_loss(
    student_emb: Tensor,
    teacher_emb: Tensor,
    targets: Tensor,
    cd_weight: float = 100.0,
    id_weight: float = 1000.0,
    variant: str = "official",
    plan: PairPlan | None = None,
) -> Tensor:
    """Label-wise embedding distillation ``cd_weight * CD + id_weight * ID`` in one pass.

    Defaults are the paper's weights (100, 1000). student_emb [B, q, D], teacher_emb
    [B, q, D'], targets [B, q] -> scalar; ``plan``: ``pair_plan(targets)`` (optional).
    """
    cd, id_ = cd_id_losses(student_emb, teacher_emb, targets, variant, plan)
    return cd_weight * cd + id_weight * id_
