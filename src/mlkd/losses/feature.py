"""Feature-based baselines: RKD and PKT on pooled features, ReviewKD on stage feature maps.

Teacher features are treated as constants (detached). Distance, kernel and KL math runs in
float32 at least with autocast off.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlkd.losses.common import full_precision

HCL_LEVELS = (4, 2, 1)


def _check_pooled(name: str, student: Tensor, teacher: Tensor) -> None:
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{name}: features must be [B, F] and [B, F'] with the same B, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}"
        )


def _normalised_distances(x: Tensor) -> Tensor:
    """[B, F] -> [B, B] distances sqrt(clamp(squared, 1e-12)), diagonal 0, / off-diagonal mean."""
    diff = x[:, None, :] - x[None, :, :]
    d = (diff * diff).sum(-1).clamp(min=1e-12).sqrt()
    d = d * (1 - torch.eye(len(x), dtype=d.dtype, device=d.device))
    mean = d.sum() / max(len(x) * (len(x) - 1), 1)
    return d / mean.clamp(min=1e-12)  # the clamp only matters for B = 1 (no pairs)


def _angles(x: Tensor) -> Tensor:
    """[B, F] -> [B, B, B] cosines: entry (j, i, k) = cos of the angle at x_j between x_i, x_k.

    A zero difference vector (x_i = x_j) has cosine 0 and no gradient (F.normalize would give
    it a gradient of order 1 / eps = 1e12 when two distinct samples coincide).
    """
    diff = x[None, :, :] - x[:, None, :]
    norm = torch.linalg.vector_norm(diff, dim=2, keepdim=True)
    inverse = torch.where(norm > 1e-12, 1.0 / norm.clamp(min=1e-12), torch.zeros_like(norm))
    unit = diff * inverse
    return torch.bmm(unit, unit.transpose(1, 2))


#: RKD variants: (distance weight, angle weight, distance reduction).
RKD_VARIANTS: dict[str, tuple[float, float, str]] = {
    "original": (25.0, 50.0, "mean"),  # Park et al. 2019: means over the B x B / B^3 entries
    "official": (10.0, 10.0, "batch"),  # the official L2D code: RKD(x=10, y=10), distance sum / B
}


def rkd_loss(
    student_feat: Tensor,
    teacher_feat: Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
    distance_reduction: str = "mean",
) -> Tensor:
    """Relational KD (Park et al. 2019) on pooled features [B, F] and [B, F'] -> scalar.

    distance term: pairwise distances, each divided by its off-diagonal mean, smooth-L1
    (beta 1) over the B x B entries, averaged (``distance_reduction="mean"``, Park et al.) or
    summed and divided by B (``"batch"``, the official L2D code); angle term: cosines of all
    triplet angles, smooth-L1 averaged over B^3 entries. The defaults 25 / 50 / mean are the RKD
    paper's; the official L2D code used 10 / 10 / batch (``RKD_VARIANTS["official"]``): at
    B = 64 its distance term weighs 10 * 64 / 25 = 25.6 times Park's and its angle term 1/5.
    """
    if distance_reduction not in ("mean", "batch"):
        raise ValueError(f"rkd_loss: distance_reduction must be 'mean' or 'batch', got {distance_reduction!r}")
    _check_pooled("rkd_loss", student_feat, teacher_feat)
    with full_precision(student_feat, teacher_feat.detach()) as (s, t):
        loss = s.new_zeros(())
        if distance_weight:
            reduction = "mean" if distance_reduction == "mean" else "sum"
            dist = F.smooth_l1_loss(_normalised_distances(s), _normalised_distances(t), beta=1.0, reduction=reduction)
            loss = loss + distance_weight * (dist if distance_reduction == "mean" else dist / len(s))
        if angle_weight:
            angle = F.smooth_l1_loss(_angles(s), _angles(t), beta=1.0)
            loss = loss + angle_weight * angle
        return loss


def _kernel_probabilities(x: Tensor, eps: float) -> Tensor:
    """[B, F] -> [B, B]: cosine kernel (cos + 1) / 2, each row normalised to sum to 1."""
    x = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + eps)
    kernel = (x @ x.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


def pkt_loss(student_feat: Tensor, teacher_feat: Tensor, eps: float = 1e-7, reduction: str = "mean") -> Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas 2018) on [B, F] and [B, F'] -> scalar.

    Features are L2-normalised (norm + eps), cosine kernels (cos + 1) / 2 are row-normalised
    into conditional probabilities, and KL(teacher || student) is computed entrywise as
    t * log((t + eps) / (s + eps)). reduction "mean" (default) averages over the B x B entries,
    as the authors' code does (torch.mean); "sum" sums them.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"pkt_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    _check_pooled("pkt_loss", student_feat, teacher_feat)
    with full_precision(student_feat, teacher_feat.detach()) as (s, t):
        p_s, p_t = _kernel_probabilities(s, eps), _kernel_probabilities(t, eps)
        kl = p_t * torch.log((p_t + eps) / (p_s + eps))
        return kl.mean() if reduction == "mean" else kl.sum()


def hcl_loss(
    student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor], levels: Sequence[int] = HCL_LEVELS
) -> Tensor:
    """Hierarchical context loss of ReviewKD, summed over stages -> scalar.

    student_feats, teacher_feats: lists of [B, C, H, W] maps of equal shapes per stage. For
    each stage: MSE at full size with weight 1, then, for each level l in (4, 2, 1) smaller
    than H, MSE of the adaptive-average-pooled l x l maps with weight 1/2, 1/4, 1/8 (halving);
    the weighted sum is divided by the sum of the weights used (as in Chen et al. 2021).
    """
    total = None
    for fs, ft in zip(student_feats, teacher_feats):
        with full_precision(fs, ft.detach()) as (fs, ft):
            loss, weight, weight_sum = F.mse_loss(fs, ft), 1.0, 1.0
            for level in levels:
                if level >= fs.shape[2]:
                    continue
                weight /= 2.0
                pooled_s = F.adaptive_avg_pool2d(fs, (level, level))
                pooled_t = F.adaptive_avg_pool2d(ft, (level, level))
                loss = loss + weight * F.mse_loss(pooled_s, pooled_t)
                weight_sum += weight
            total = loss / weight_sum if total is None else total + loss / weight_sum
    if total is None:
        raise ValueError("hcl_loss: no feature maps given")
    return total


def pooled_as_map(pooled: Tensor) -> Tensor:
    """[B, F] -> [B, F, 1, 1]: the pooled feature as the deepest ReviewKD level."""
    if pooled.dim() != 2:
        raise ValueError(f"pooled features must be [B, F], got {tuple(pooled.shape)}")
    return pooled[:, :, None, None]


class ABF(nn.Module):
    """Attention-based fusion (ReviewKD): 1x1 conv to mid channels, optional fusion with the
    deeper stage's residual (upsampled, mixed by two sigmoid attention maps), 3x3 conv to the
    teacher's channels. Returns (output [B, C_t, H, W], residual [B, mid, H, W])."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)  # type: ignore[arg-type]  # Sequential items are Modules
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)  # type: ignore[arg-type]

    def forward(self, x: Tensor, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.conv1(x)
        if self.att_conv is not None and residual is not None:
            residual = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            att = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * att[:, 0:1] + residual * att[:, 1:2]
        return self.conv2(x), x


class ReviewKD(nn.Module):
    """Knowledge review (Chen et al. 2021): ABF fusion from deep to shallow + HCL loss.

    Built from the stage channel lists (shallow to deep) of the student and the teacher;
    ``mid_channel`` = 256 as in the original. Called as ``review(student_features,
    teacher_features) -> scalar``, each a list of [B, C_s, H_s, W_s] maps, shallow to deep.
    A student map whose spatial size differs from its teacher stage's is first resized to it
    (bilinear). The deepest student stage goes through its ABF alone; each shallower stage is
    fused with the residual of the stage below it, upsampled (nearest). The ABF parameters
    must be trained with the student (they are this module's parameters).

    Variants (``ReviewKDTerm``): ``stages`` reviews the backbone's stage maps only; ``official``
    appends the pooled feature [B, F] as a deepest 1 x 1 level (5 levels for a 4-stage
    backbone, the official L2D code's ``shapes = [1, 7, 14, 28, 56]``). Both are built with this
    module: pass the channel lists with the pooled dims appended and the maps with
    :func:`pooled_as_map` appended for ``official``.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], mid_channel: int = 256):
        super().__init__()
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError(
                f"ReviewKD: student and teacher need the same number (>0) of stages, got "
                f"{list(student_channels)} and {list(teacher_channels)}"
            )
        self.student_channels = list(student_channels)
        self.teacher_channels = list(teacher_channels)
        last = len(student_channels) - 1
        self.abfs = nn.ModuleList(
            ABF(c_s, mid_channel, c_t, fuse=i < last)
            for i, (c_s, c_t) in enumerate(zip(student_channels, teacher_channels))
        )

    def review(self, student_feats: Sequence[Tensor], sizes: Sequence) -> list[Tensor]:
        """ABF outputs, shallow to deep, each at the matching teacher stage's size."""
        outputs: list[Tensor] = []
        residual = None
        for i in reversed(range(len(student_feats))):
            x = student_feats[i]
            if x.shape[-2:] != sizes[i]:
                x = F.interpolate(x, size=tuple(sizes[i]), mode="bilinear", align_corners=False)
            out, residual = self.abfs[i](x, residual)
            outputs.insert(0, out)
        return outputs

    def forward(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
        if len(student_feats) != len(self.abfs) or len(teacher_feats) != len(self.abfs):
            raise ValueError(
                f"ReviewKD: expected {len(self.abfs)} stage maps from student and teacher, got "
                f"{len(student_feats)} and {len(teacher_feats)}"
            )
        for f in (*student_feats, *teacher_feats):
            if f.dim() != 4:
                raise ValueError(f"ReviewKD: stage maps must be NCHW, got {tuple(f.shape)}")
        teacher_feats = [t.detach() for t in teacher_feats]
        outputs = self.review(student_feats, [t.shape[-2:] for t in teacher_feats])
        return hcl_loss(outputs, teacher_feats)
