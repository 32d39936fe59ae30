"""optim.head_lr_scale: the parameter groups and their OneCycle peaks, against hand-built sets."""

from __future__ import annotations

from torch import nn

from mlkd.config import OptimConfig
from mlkd.engine.optim import build_optimizer, build_scheduler


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Linear(4, 2)


def ids(params):
    return {id(p) for p in params}


def test_head_lr_scale_gives_the_head_and_method_layers_their_own_peak_lr():
    net, method_layer = Net(), nn.Linear(2, 2)
    cfg = OptimConfig(lr=1e-3, weight_decay=0.1, head_lr_scale=10.0, epochs=2, pct_start=0.5)
    opt = build_optimizer([net, method_layer], cfg, fused=False)
    groups = {(g["lr"], g["weight_decay"]): ids(g["params"]) for g in opt.param_groups}
    b, h = net.backbone, net.head
    assert groups == {
        (1e-3, 0.1): ids([b[0].weight]),
        (1e-3, 0.0): ids([b[0].bias, b[1].weight, b[1].bias]),
        (1e-2, 0.1): ids([h.weight, method_layer.weight]),
        (1e-2, 0.0): ids([h.bias, method_layer.bias]),
    }
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)
    peaks = [0.0] * len(opt.param_groups)
    for _ in range(10):
        opt.step()
        sched.step()
        peaks = [max(p, g["lr"]) for p, g in zip(peaks, opt.param_groups)]
    assert [round(p / g["max_lr"], 6) for p, g in zip(peaks, opt.param_groups)] == [1.0] * 4
    assert sorted({g["max_lr"] for g in opt.param_groups}) == [1e-3, 1e-2]


def test_scale_one_keeps_the_two_official_groups():
    net = Net()
    opt = build_optimizer([net], OptimConfig(lr=3e-4, weight_decay=1e-4), fused=False)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [
        (3e-4, 1e-4, 2),
        (3e-4, 0.0, 4),
    ]
