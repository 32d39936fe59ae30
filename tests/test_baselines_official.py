"""``variant: official`` of RKD and ReviewKD against loops written from the official L2D code's
definitions (criterion/distiller_zoo/ft_based/rkd.py and reviewkd.py), restated here:

RKD(x=10, y=10): distance term = smooth_l1(d_s / mean(d_s > 0), d_t / mean(d_t > 0),
reduction="sum") / N over the N x N distance matrices (diagonal 0); angle term = mean over all
(a, b, c) of smooth_l1(cos_s(a; b, c), cos_t(a; b, c)), cos(a; b, c) the cosine at x_a between
x_b - x_a and x_c - x_a (a zero vector normalised to 0); loss = 10 * distance + 10 * angle.

ReviewKD: the stage maps plus the pooled feature as a deepest [B, F, 1, 1] level; ABFs from the
deepest (no fusion) to the shallowest (fused with the residual of the level below, upsampled
nearest to its size); per level, HCL = (MSE + sum over l in 4, 2, 1 with l < H of
MSE(avgpool_l) / 2^k) / (1 + sum of the 1/2^k used); the levels summed.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mlkd.losses import build_objective, rkd_loss
from mlkd.losses.feature import RKD_VARIANTS
from mlkd.models.output import ModelOutput


def huber(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def official_rkd_loop(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)

    def distances(x):
        d = [[0.0 if i == j else float(torch.linalg.vector_norm(x[i] - x[j])) for j in range(n)] for i in range(n)]
        positive = [v for row in d for v in row if v > 0]
        mean = sum(positive) / len(positive)
        return [[v / mean for v in row] for row in d]

    def cos(x, a, b, c):
        u, v = x[b] - x[a], x[c] - x[a]
        nu, nv = torch.linalg.vector_norm(u), torch.linalg.vector_norm(v)
        u = u / nu if nu > 1e-12 else torch.zeros_like(u)
        v = v / nv if nv > 1e-12 else torch.zeros_like(v)
        return float(u @ v)

    ds, dt = distances(s), distances(t)
    distance = sum(huber(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n
    angle = sum(huber(cos(s, a, b, c), cos(t, a, b, c)) for a, b, c in itertools.product(range(n), repeat=3)) / n**3
    return 10 * distance + 10 * angle


@pytest.mark.parametrize("seed", [0, 1])
def test_rkd_official_matches_the_official_definition(seed):
    torch.manual_seed(seed)
    s, t = torch.randn(7, 5, dtype=torch.float64), 3 * torch.randn(7, 9, dtype=torch.float64)
    term = build_objective("rkd", options={"rkd": {"variant": "official"}}).terms["rkd"]
    assert (term.distance_weight, term.angle_weight, term.distance_reduction) == (10.0, 10.0, "batch")
    got = term.compute(s, t, None)
    assert got.item() == pytest.approx(official_rkd_loop(s, t), rel=1e-12)
    # Park's original differs: at B = 7 the distance weight ratio is 10 * 7 / 25
    assert rkd_loss(s, t).item() != pytest.approx(got.item(), rel=1e-3)


def test_rkd_weights_per_variant_and_overrides():
    assert RKD_VARIANTS["original"] == (25.0, 50.0, "mean")
    default = build_objective("rkd").terms["rkd"]
    assert (default.variant, default.distance_weight, default.angle_weight) == ("original", 25.0, 50.0)
    mixed = build_objective("rkd", options={"rkd": {"variant": "official", "angle_weight": 0.0}}).terms["rkd"]
    torch.manual_seed(2)
    s, t = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    distance_only = mixed.compute(s, t, None).item()
    full = build_objective("rkd", options={"rkd": {"variant": "official"}}).terms["rkd"].compute(s, t, None).item()
    loop = official_rkd_loop(s, t)
    assert distance_only < full and full == pytest.approx(loop, rel=1e-12)
    from mlkd.errors import ConfigError

    with pytest.raises(ConfigError, match="loss term 'rkd': option 'variant' must be one of"):
        build_objective("rkd", options={"rkd": {"variant": "park"}})


def official_reviewkd_loop(review, fs, ft):
    """The official forward + HCL with the ABF weights of ``review`` (a mlkd ReviewKD)."""
    results, residual = [], None
    for i in reversed(range(len(fs))):
        abf = review.abfs[i]
        x = abf.conv1(fs[i])
        n, _, h, w = x.shape
        if abf.att_conv is not None:
            y = F.interpolate(residual, (h, w), mode="nearest")
            z = abf.att_conv(torch.cat([x, y], dim=1))
            x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
        residual = x
        results.insert(0, abf.conv2(x))
    total = 0.0
    for s, t in zip(results, ft):
        loss, cnt, tot = F.mse_loss(s, t), 1.0, 1.0
        for level in (4, 2, 1):
            if level >= s.shape[2]:
                continue
            cnt /= 2.0
            loss = loss + F.mse_loss(F.adaptive_avg_pool2d(s, level), F.adaptive_avg_pool2d(t, level)) * cnt
            tot += cnt
        total = total + loss / tot
    return total


def test_reviewkd_official_reviews_the_pooled_feature_as_a_fifth_level():
    torch.manual_seed(0)
    s_ch, t_ch, sizes = [3, 4, 5, 6], [4, 5, 6, 8], [16, 8, 4, 2]
    fs = [torch.randn(2, c, k, k, dtype=torch.float64) for c, k in zip(s_ch, sizes)]
    ft = [torch.randn(2, c, k, k, dtype=torch.float64) for c, k in zip(t_ch, sizes)]
    ps, pt = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    objective = (
        build_objective(
            "reviewkd",
            options={"reviewkd": {"variant": "official", "mid_channel": 4}},
            student_channels=s_ch,
            teacher_channels=t_ch,
            student_pooled_dim=6,
            teacher_pooled_dim=8,
        )
        .double()
        .eval()
    )
    term = objective.terms["reviewkd"]
    assert len(term.review.abfs) == 5 and term.review.abfs[-1].att_conv is None
    student = ModelOutput(logits=torch.zeros(2, 3), label_embeddings=None, features=fs, pooled=ps)
    teacher = ModelOutput(logits=torch.zeros(2, 3), label_embeddings=None, features=ft, pooled=pt)
    got = term(student, teacher, torch.zeros(2, 3))
    want = official_reviewkd_loop(term.review, [*fs, ps[:, :, None, None]], [*ft, pt[:, :, None, None]])
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    stages = build_objective(
        "reviewkd", options={"reviewkd": {"mid_channel": 4}}, student_channels=s_ch, teacher_channels=t_ch
    ).terms["reviewkd"]
    assert stages.variant == "stages" and len(stages.review.abfs) == 4


def test_reviewkd_official_needs_pooled_dims():
    from mlkd.errors import ConfigError

    with pytest.raises(ConfigError, match="pooled"):
        build_objective(
            "reviewkd", options={"reviewkd": {"variant": "official"}}, student_channels=[4], teacher_channels=[4]
        )


def test_reviewkd_official_on_real_models_trains_its_fifth_abf():
    """On two small timm backbones: the pooled level is the model's pooled feature (F channels)."""
    from mlkd.models import build_model

    torch.manual_seed(0)
    student, teacher = (
        build_model("tiny", 3, embed_dim=16, num_heads=2, ffn_dim=32),
        build_model("tiny_byobnet", 3, embed_dim=16, num_heads=2, ffn_dim=32).eval(),
    )
    objective = build_objective(
        "reviewkd",
        options={"reviewkd": {"variant": "official", "mid_channel": 8}},
        student_channels=student.feature_channels,
        teacher_channels=teacher.feature_channels,
        student_pooled_dim=student.pooled_dim,
        teacher_pooled_dim=teacher.pooled_dim,
    )
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        t_out = teacher(x)
    total, values = objective(student(x), t_out, torch.zeros(2, 3))
    total.backward()
    deepest = objective.terms["reviewkd"].review.abfs[-1]
    assert deepest.conv1[0].in_channels == student.pooled_dim and deepest.conv2[0].out_channels == teacher.pooled_dim
    assert torch.isfinite(total) and deepest.conv1[0].weight.grad.abs().sum() > 0
