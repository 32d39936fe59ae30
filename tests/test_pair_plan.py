"""CD/ID with a pair plan built on the host: same values and gradients, checked mismatch."""

import pytest
import torch

from mlkd.losses import build_objective, cd_id_losses, cd_loss, id_loss
from mlkd.losses.embedding import pair_plan
from mlkd.models.output import ModelOutput

F64 = torch.float64


def _inputs(seed=0, B=9, q=7):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, q, 5, generator=g, dtype=F64).requires_grad_()
    t = torch.randn(B, q, 3, generator=g, dtype=F64)
    y = (torch.rand(B, q, generator=g) < 0.4).to(F64)
    return s, t, y


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_plan_gives_identical_values_and_gradients(variant):
    s, t, y = _inputs()
    cases = [
        (lambda p: sum(cd_id_losses(s, t, y, variant, p)), pair_plan(y)),
        (lambda p: cd_loss(s, t, y, variant, p), pair_plan(y, True, False)),
        (lambda p: id_loss(s, t, y, variant, p), pair_plan(y, False, True)),
    ]
    for fn, plan in cases:
        plain = fn(None)
        (g_plain,) = torch.autograd.grad(plain, s)
        planned = fn(plan)
        (g_planned,) = torch.autograd.grad(planned, s)
        assert torch.equal(plain, planned) and torch.equal(g_plain, g_planned)


def test_plan_for_other_targets_is_refused():
    s, t, y = _inputs()
    with pytest.raises(ValueError, match="pair plan"):
        cd_loss(s, t, y, plan=pair_plan(y))  # built with id groups too
    with pytest.raises(ValueError, match="pair plan"):
        cd_id_losses(s, t, y, plan=pair_plan(y[:4]))


@pytest.mark.parametrize("method,options", [("l2d", {}), ("mld+cd", {}), ("l2d", {"id": {"variant": "paper"}})])
def test_objective_with_host_targets_is_unchanged(method, options):
    s, t, y = _inputs(1)
    g = torch.Generator().manual_seed(2)
    student = ModelOutput(torch.randn(9, 7, generator=g, dtype=F64), s, torch.zeros(9, 2))
    teacher = ModelOutput(torch.randn(9, 7, generator=g, dtype=F64), t, torch.zeros(9, 2))
    objective = build_objective(method, options=options)
    total, values = objective(student, teacher, y)
    total_h, values_h = objective(student, teacher, y, host_targets=y.clone())
    assert torch.equal(total, total_h)
    assert all(torch.equal(values[k], values_h[k]) for k in values)
