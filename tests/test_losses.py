"""Logit and embedding losses: fast versions against the loop oracles, golden values, edges."""

import math

import pytest
import torch

from mlkd.losses import bce_loss, cd_id_losses, cd_loss, id_loss, led_loss, logits_mse_loss, mld_loss, ps_loss
from oracles import bce_oracle, cd_loss_loop, id_loss_loop, mld_oracle, mse_oracle, ps_oracle

F64 = torch.float64

# 7 images x 6 classes. Images have 3, 1, 0, 3, 2, 1, 5 positives; classes have 5, 4, 1, 2,
# 0, 3 positives: every group size 0, 1, 2 and more occurs for both CD and ID.
EDGE_TARGETS = torch.tensor(
    [
        [1, 1, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0],
        [1, 0, 0, 0, 0, 1],
        [0, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 1],
    ],
    dtype=F64,
)


def assert_matches(fast, oracle, students, rtol=1e-6):
    """Values and gradients w.r.t. ``students`` agree."""
    torch.testing.assert_close(fast, oracle, rtol=rtol, atol=1e-12)
    g_fast = torch.autograd.grad(fast, students, allow_unused=True)
    g_oracle = torch.autograd.grad(oracle, students, allow_unused=True)
    for a, b in zip(g_fast, g_oracle):
        a = torch.zeros_like(students[0]) if a is None else a
        b = torch.zeros_like(students[0]) if b is None else b
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-10)


def logits_pair(B=5, q=6, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(B, q, generator=g, dtype=F64)).requires_grad_()
    t = scale * torch.randn(B, q, generator=g, dtype=F64)
    y = (torch.rand(B, q, generator=g) < 0.4).to(F64)
    return s, t, y


def embeddings(B, q, D=4, Dt=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, q, D, generator=g, dtype=F64).requires_grad_()
    return s, torch.randn(B, q, Dt, generator=g, dtype=F64)


# ---------------------------------------------------------------- logits vs oracle
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_bce_matches_oracle(reduction):
    s, _, y = logits_pair()
    assert_matches(bce_loss(s, y, reduction), bce_oracle(s, y, reduction), [s])


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_mld_matches_oracle(temperature):
    s, t, _ = logits_pair(scale=3.0)
    assert_matches(mld_loss(s, t, temperature), mld_oracle(s, t, temperature), [s])


def test_mld_clamps_like_probabilities():
    # Saturated logits: the clamp to [1e-8, 1 - 1e-8] bounds the loss and stops the gradient.
    s = torch.tensor([[40.0, -40.0, 3.0]], dtype=F64, requires_grad=True)
    t = torch.tensor([[-40.0, 40.0, -2.0]], dtype=F64)
    assert_matches(mld_loss(s, t), mld_oracle(s, t), [s])
    s32 = s.detach().float().requires_grad_()
    loss = mld_loss(s32, t.float())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s32.grad).all()
    assert s32.grad[0, 0] == 0 and s32.grad[0, 1] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ps_matches_oracle(seed):
    s, t, y = logits_pair(B=6, q=7, seed=seed)
    y[0] = 1  # an image with all labels positive (one-element groups)
    y[1] = 0  # an image without positives
    y[2] = 0
    y[2, 3] = 1  # exactly one positive
    assert_matches(ps_loss(s, t, y), ps_oracle(s, t, y), [s])


def test_mse_matches_oracle():
    s, t, _ = logits_pair()
    assert_matches(logits_mse_loss(s, t), mse_oracle(s, t), [s])


# ---------------------------------------------------------------- golden values
def test_bce_golden():
    z = torch.tensor([[0.0, math.log(3)], [-math.log(3), 0.0]], dtype=F64)
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)
    # -log(1/2) - log(1/4) - log(3/4) - log(1/2) = log(64/3)
    assert bce_loss(z, y).item() == pytest.approx(math.log(64 / 3), rel=1e-12)
    assert bce_loss(z, y, "mean").item() == pytest.approx(math.log(64 / 3) / 2, rel=1e-12)


def test_mld_golden():
    s = torch.tensor([[0.0, 1.0]], dtype=F64)
    t = torch.tensor([[math.log(3), 1.0]], dtype=F64)
    # p_t = 3/4, p_s = 1/2 on label 0; label 1 identical.
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert mld_loss(s, t).item() == pytest.approx(expected, rel=1e-12)


def test_ps_golden():
    s = torch.tensor([[0.0, 0.0, 0.0]], dtype=F64)
    t = torch.tensor([[math.log(2), 0.0, 0.0]], dtype=F64)
    one_pos = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    # group {z0, z1, z2}: teacher (1/2, 1/4, 1/4), student uniform.
    assert ps_loss(s, t, one_pos).item() == pytest.approx(0.5 * math.log(1.5) + 0.5 * math.log(0.75), rel=1e-12)
    two_pos = torch.tensor([[1.0, 1.0, 0.0]], dtype=F64)
    # group {z0, z2}: teacher (2/3, 1/3) vs (1/2, 1/2); group {z1, z2}: equal, 0.
    expected = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    assert ps_loss(s, t, two_pos).item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- CD / ID vs oracle
@pytest.mark.parametrize("variant", ["official", "paper"])
def test_cd_id_edge_groups_match_oracle(variant):
    s, t = embeddings(*EDGE_TARGETS.shape)
    y = EDGE_TARGETS
    assert_matches(cd_loss(s, t, y, variant), cd_loss_loop(s, t, y, variant), [s])
    assert_matches(id_loss(s, t, y, variant), id_loss_loop(s, t, y, variant), [s])
    cd, id_ = cd_id_losses(s, t, y, variant)
    assert_matches(cd + 7 * id_, cd_loss_loop(s, t, y, variant) + 7 * id_loss_loop(s, t, y, variant), [s])


@pytest.mark.parametrize("variant", ["official", "paper"])
@pytest.mark.parametrize("seed", [0, 1])
def test_led_random_matches_oracle(variant, seed):
    s, t = embeddings(12, 9, D=6, Dt=3, seed=seed)
    y = (torch.rand(12, 9, generator=torch.Generator().manual_seed(seed)) < 0.35).to(F64)
    oracle = 100 * cd_loss_loop(s, t, y, variant) + 1000 * id_loss_loop(s, t, y, variant)
    assert_matches(led_loss(s, t, y, variant=variant), oracle, [s])
    assert_matches(
        led_loss(s, t, y, 2.0, 3.0, variant),
        2 * cd_loss_loop(s, t, y, variant) + 3 * id_loss_loop(s, t, y, variant),
        [s],
    )


def test_pair_blocks_match_oracle(monkeypatch):
    import mlkd.losses.embedding as embedding

    monkeypatch.setattr(embedding, "_CHUNK", 3)  # many blocks, a partial last one
    s, t = embeddings(*EDGE_TARGETS.shape)
    y = EDGE_TARGETS
    assert_matches(led_loss(s, t, y), 100 * cd_loss_loop(s, t, y) + 1000 * id_loss_loop(s, t, y), [s])


def test_no_positive_pairs_gives_zero_with_grad():
    s, t = embeddings(3, 4)
    y = torch.zeros(3, 4, dtype=F64)
    y[0, 0] = 1
    cd, id_ = cd_id_losses(s, t, y)
    assert cd.item() == 0 and id_.item() == 0
    (grad,) = torch.autograd.grad(cd + id_, s)
    assert (grad == 0).all()


def test_official_group_of_two_is_exactly_zero():
    s, t = embeddings(4, 3)
    cd_only = torch.zeros(4, 3, dtype=F64)
    cd_only[0, 1] = cd_only[2, 1] = 1  # class 1 has two images, each with one label
    id_only = torch.zeros(4, 3, dtype=F64)
    id_only[3, 0] = id_only[3, 2] = 1  # image 3 has two labels, each in one image
    for y, loss_fn in [(cd_only, cd_loss), (id_only, id_loss)]:
        loss = loss_fn(s, t, y)
        (grad,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0.0 and (grad == 0).all()
        paper = loss_fn(s, t, y, "paper")  # the same group is not free in the paper variant
        assert paper.item() > 0
        assert torch.autograd.grad(paper, s)[0].abs().sum() > 0


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_coinciding_embeddings_have_finite_gradients(variant):
    s, t = embeddings(*EDGE_TARGETS.shape)
    s = s.detach().clone()
    s[3, 0] = s[0, 0]  # two positives of class 0 coincide
    s[6, 1] = s[6, 3]  # two labels of image 6 coincide
    t[3, 0] = t[0, 0]
    s.requires_grad_()
    loss = led_loss(s, t, EDGE_TARGETS, variant=variant)
    (grad,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert_matches(
        led_loss(s, t, EDGE_TARGETS, variant=variant),
        100 * cd_loss_loop(s, t, EDGE_TARGETS, variant) + 1000 * id_loss_loop(s, t, EDGE_TARGETS, variant),
        [s],
    )
    same = torch.ones_like(s).requires_grad_()  # every distance is zero
    loss = led_loss(same, torch.ones_like(t), EDGE_TARGETS, variant=variant)
    (grad,) = torch.autograd.grad(loss, same)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_bad_inputs_raise():
    s, t = embeddings(3, 4)
    with pytest.raises(ValueError, match="variant"):
        cd_loss(s, t, torch.ones(3, 4), "typo")
    with pytest.raises(ValueError, match="targets"):
        id_loss(s, t, torch.ones(4, 3))
    with pytest.raises(ValueError, match="shape"):
        mld_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- low precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_under_autocast_are_finite_and_close(dtype):
    g = torch.Generator().manual_seed(3)
    y = EDGE_TARGETS.float()
    s_emb, t_emb = torch.randn(7, 6, 8, generator=g), torch.randn(7, 6, 8, generator=g)
    s_log, t_log = 3 * torch.randn(7, 6, generator=g), 3 * torch.randn(7, 6, generator=g)
    cases = [
        (lambda a, b: led_loss(a, b, y), s_emb, t_emb),
        (lambda a, b: cd_id_losses(a, b, y, "paper")[0], s_emb, t_emb),
        (mld_loss, s_log, t_log),
        (lambda a, b: ps_loss(a, b, y), s_log, t_log),
        (logits_mse_loss, s_log, t_log),
        (lambda a, b: bce_loss(a, y), s_log, t_log),
    ]
    for fn, s, t in cases:
        reference = fn(s, t)
        low = s.to(dtype).requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = fn(low, t.to(dtype))
        value.backward()
        assert value.dtype == torch.float32
        assert torch.isfinite(value) and torch.isfinite(low.grad).all()
        torch.testing.assert_close(value, reference, rtol=3e-2, atol=1e-3)
