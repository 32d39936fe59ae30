"""Where the official code's float32 BCE (probabilities clamped at 1e-8) departs from the exact
loss, measured on a fine grid of logits, against mlkd's ``bce_loss`` (exact to float32 rounding).

The oracle is the official criterion/loss/bce.py, restated: p = sigmoid(z) in float32,
loss = -(y log(clamp(p, 1e-8)) + (1 - y) log(clamp(1 - p, 1e-8))). The exact loss is
softplus(z) for y = 0 and softplus(-z) for y = 1, in float64.
"""

import torch
import torch.nn.functional as F

from mlkd.losses import bce_loss

GRID = torch.arange(0.0, 25.0, 1e-3, dtype=torch.float64)


def official(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(z.float())
    loss = y.float() * torch.log(p.clamp(min=1e-8)) + (1 - y.float()) * torch.log((1.0 - p).clamp(min=1e-8))
    return (-loss).double()


def first(mask: torch.Tensor, values: torch.Tensor) -> float:
    return float(values[mask.nonzero()[0, 0]])


def test_mlkd_bce_is_exact_at_every_logit():
    for y, exact in ((0.0, F.softplus(GRID)), (1.0, F.softplus(-GRID))):
        targets = torch.full_like(GRID, y)
        per_logit = torch.stack(
            [bce_loss(z.view(1, 1).float(), t.view(1, 1)) for z, t in zip(GRID[::50], targets[::50])]
        ).double()
        rel = (per_logit - exact[::50]).abs() / exact[::50]
        assert rel.max() < 1e-6


def test_negative_label_boundary_is_about_plus_sixteen_and_a_half():
    exact = F.softplus(GRID)
    diff = (official(GRID, torch.zeros_like(GRID)) - exact).abs()
    assert 14.0 < first(diff > 0.1, GRID) < 14.8
    assert 16.3 < first(diff > 0.5, GRID) < 16.6  # the docstring's "about +16.4"
    saturated = first(torch.sigmoid(GRID.float()) == 1.0, GRID)
    assert 16.6 < saturated < 16.7  # p rounds to 1: the clamp's constant
    at = GRID > saturated
    assert torch.allclose(
        official(GRID[at], torch.zeros_like(GRID[at])), torch.tensor(18.420680743952367, dtype=torch.float64), rtol=1e-6
    )
    assert (diff[GRID < 5.0] < 1e-4).all()  # small logits: the two agree


def test_positive_label_boundary_is_the_clamp_at_minus_eighteen_point_four():
    z = -GRID
    exact = F.softplus(GRID)
    rel = (official(z, torch.ones_like(z)) - exact).abs() / exact
    boundary = -first(rel > 1e-3, GRID)
    assert -18.5 < boundary < -18.42  # log(1e-8) = -18.42: only the clamp acts
    assert (rel[GRID < 18.0] < 1e-5).all()
