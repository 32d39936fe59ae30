"""Feature losses: RKD, PKT and ReviewKD (ABF + HCL) against loop oracles and by shape."""

import pytest
import torch

from mlkd.losses import ReviewKD, hcl_loss, pkt_loss, rkd_loss
from oracles import hcl_oracle, pkt_oracle, rkd_oracle
from test_losses import assert_matches

F64 = torch.float64


def pooled(B=5, F=4, Ft=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, F, generator=g, dtype=F64).requires_grad_()
    return s, torch.randn(B, Ft, generator=g, dtype=F64)


@pytest.mark.parametrize("weights", [(25.0, 50.0), (1.0, 0.0), (0.0, 1.0)])
def test_rkd_matches_oracle(weights):
    s, t = pooled()
    assert_matches(rkd_loss(s, t, *weights), rkd_oracle(s, t, *weights), [s])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_pkt_matches_oracle(reduction):
    s, t = pooled(B=6)
    assert_matches(pkt_loss(s, t, reduction=reduction), pkt_oracle(s, t, reduction=reduction), [s])


def test_rkd_pkt_finite_with_coinciding_and_zero_features():
    s, t = pooled()
    s = s.detach().clone()
    s[1] = s[0]
    s[2] = 0
    s.requires_grad_()
    for fn in (rkd_loss, pkt_loss):
        loss = fn(s, t)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert_matches(rkd_loss(s, t), rkd_oracle(s, t), [s])


def test_rkd_pkt_single_sample_is_zero():
    s, t = pooled(B=1)
    for fn in (rkd_loss, pkt_loss):
        loss = fn(s, t)
        (grad,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0 and torch.isfinite(grad).all()


def test_rkd_pkt_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, 16, generator=g), torch.randn(8, 32, generator=g)
    for fn in (rkd_loss, pkt_loss):
        low = s.bfloat16().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = fn(low, t.bfloat16())
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(low.grad).all()
        torch.testing.assert_close(value, fn(s, t), rtol=5e-2, atol=1e-3)


def maps(shapes, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(*shape, generator=g, dtype=F64) for shape in shapes]
    return [m.requires_grad_() for m in out] if requires_grad else out


def test_hcl_matches_loop_over_levels():
    # sizes 9 (levels 4, 2, 1; uneven bins), 3 (levels 2, 1), 1 (full size only)
    shapes = [(2, 3, 9, 9), (2, 5, 3, 3), (2, 4, 1, 1)]
    fs, ft = maps(shapes, 0, requires_grad=True), maps(shapes, 1)
    assert_matches(hcl_loss(fs, ft), hcl_oracle(fs, ft), fs)


def test_reviewkd_shapes_and_gradients():
    torch.manual_seed(0)
    student_channels, teacher_channels = [4, 8, 16], [6, 12, 24]
    review = ReviewKD(student_channels, teacher_channels, mid_channel=8)
    fs = maps([(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)], 2, requires_grad=True)
    ft = maps([(2, 6, 8, 8), (2, 12, 4, 4), (2, 24, 2, 2)], 3)
    review = review.double()
    outputs = review.review(fs, [t.shape[-2:] for t in ft])
    assert [tuple(o.shape) for o in outputs] == [tuple(t.shape) for t in ft]
    loss = review(fs, ft)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, hcl_oracle(outputs, ft), rtol=1e-9, atol=0)
    loss.backward()
    for name, param in review.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert review.abfs[0].att_conv[0].weight.grad.abs().sum() > 0  # fusion is used
    assert review.abfs[2].att_conv is None  # the deepest stage has nothing to fuse
    assert all(f.grad.abs().sum() > 0 for f in fs)


def test_reviewkd_rejects_mismatched_stages():
    with pytest.raises(ValueError, match="stages"):
        ReviewKD([4, 8], [6])
    review = ReviewKD([4], [6], mid_channel=4)
    with pytest.raises(ValueError, match="stage maps"):
        review([torch.zeros(1, 4, 2, 2)] * 2, [torch.zeros(1, 6, 2, 2)])


def test_reviewkd_bf16_autocast_is_finite():
    torch.manual_seed(0)
    review = ReviewKD([4, 8], [6, 12], mid_channel=8)
    fs = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    ft = [torch.randn(2, 6, 8, 8), torch.randn(2, 12, 4, 4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = review(fs, ft)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in review.parameters())


def test_abf_review_order_and_fusion_by_hand():
    torch.manual_seed(0)
    review = ReviewKD([3, 5], [4, 6], mid_channel=2).double().eval()
    x0, x1 = maps([(1, 3, 4, 4), (1, 5, 2, 2)], 4)
    shallow, deep = review.abfs
    # deepest stage alone, then the shallow stage fused with its upsampled residual
    residual = deep.conv1(x1)
    out1 = deep.conv2(residual)
    y = shallow.conv1(x0)
    up = residual.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest x2
    att = torch.sigmoid(shallow.att_conv[0](torch.cat([y, up], dim=1)))
    out0 = shallow.conv2(y * att[:, :1] + up * att[:, 1:])
    got = review.review([x0, x1], [(4, 4), (2, 2)])
    torch.testing.assert_close(got[0], out0)
    torch.testing.assert_close(got[1], out1)
