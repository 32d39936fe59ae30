"""The shared training step: non-finite policy per step (CPU) and deferred on the device
(forced here on CPU), channels_last, and the fused optimiser."""

from __future__ import annotations

import pytest
import torch

import mlkd.engine.step as step_module
from engine_helpers import tiny_config
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.trainer import fit
from mlkd.errors import NonFiniteLossError
from mlkd.losses.objective import Objective


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("step")
    cache = root / "cache"
    fit(tiny_config(root / "teacher", cache, epochs=1))
    return {"root": root, "cache": cache, "ckpt": str(root / "teacher" / "checkpoints" / "last.pt")}


def _poison(monkeypatch, bad_steps, term="mld"):
    """Make term ``term`` NaN on the given (1-based) calls of Objective.term_values (one per
    step, whether or not the step is measured by the term diagnostics)."""
    real = Objective.term_values
    calls = []

    def term_values(self, *args, **kwargs):
        values = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) in bad_steps:
            values = {**values, term: values[term] * float("nan")}
        return values

    monkeypatch.setattr(Objective, "term_values", term_values)


@pytest.fixture(params=["per-step", "deferred"])
def mode(request, monkeypatch):
    if request.param == "deferred":  # the CUDA code path, run on CPU
        monkeypatch.setattr(step_module, "DEFERRED_DEVICE_TYPES", ("cuda", "cpu"))
    return request.param


def test_skip_leaves_weights_and_optimizer_state_untouched(teacher, mode, monkeypatch, tmp_path):
    _poison(monkeypatch, {2})
    cfg = tiny_config(
        tmp_path / "run",
        teacher["cache"],
        method="mld",
        teacher=teacher["ckpt"],
        epochs=1,
        train={"nonfinite": "skip", "log_interval": 3},
    )
    record = fit(cfg)
    assert record["train"]["skipped_steps"] == 1
    assert torch.isfinite(torch.tensor(record["train"]["mld"]))
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["global_step"] == 4  # 128 images / 32: the skipped step counts as a step
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {3.0}  # Adam's step count: the skipped update never happened
    assert state["optimizer"]["param_groups"][0].get("fused") is (True if mode == "deferred" else None)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_stop_names_the_step_and_the_term(teacher, mode, monkeypatch, tmp_path):
    _poison(monkeypatch, {2})
    cfg = tiny_config(
        tmp_path / "run", teacher["cache"], method="mld", teacher=teacher["ckpt"], epochs=1, train={"nonfinite": "stop"}
    )
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 2 in term\(s\) mld"):
        fit(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_channels_last_trains_and_evaluates(teacher, tmp_path):
    from mlkd.data.loaders import build_datasets, eval_loader
    from mlkd.engine.builders import model_from_checkpoint
    from mlkd.engine.distributed import DistInfo
    from mlkd.engine.evaluation import predict
    from mlkd.engine.runtime import Precision

    base = tiny_config(tmp_path / "a", teacher["cache"], method="l2d", teacher=teacher["ckpt"], epochs=1)
    cl = tiny_config(
        tmp_path / "b", teacher["cache"], method="l2d", teacher=teacher["ckpt"], epochs=1, train={"channels_last": True}
    )
    a, b = fit(base), fit(cl)
    for term in ("bce", "mld", "cd", "id"):  # the same training, up to kernel rounding
        assert b["train"][term] == pytest.approx(a["train"][term], rel=1e-3, abs=1e-6)
    model, _ = model_from_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", torch.device("cpu"))
    loader = eval_loader(build_datasets(cl.data)[1], cl.data, DistInfo(), False)
    plain = predict(model, loader, torch.device("cpu"), Precision(None, False))
    model = model.to(memory_format=torch.channels_last)
    last = predict(model, loader, torch.device("cpu"), Precision(None, False), channels_last=True)
    torch.testing.assert_close(last["scores"], plain["scores"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scaler_on", [False, True])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_deferred_guard_masks_the_update_on_the_device(scaler_on, clip):
    """train_step with a fused optimiser: a NaN step changes no weight and no Adam state,
    with and without GradScaler and gradient clipping; a finite step updates."""
    from types import SimpleNamespace

    from mlkd.config import Config
    from mlkd.engine.runtime import Precision
    from mlkd.engine.step import NonFiniteGuard, train_step

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    poison = {"on": False}

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images, targets, teacher_out, host_targets=None):
            loss = ((self.net(images.flatten(1)[:, :3]) - targets) ** 2).sum()
            if poison["on"]:
                loss = loss * float("nan")
            return loss, {"mse": loss.detach()}

    cfg = Config.model_validate({"optim": {"grad_clip": clip}})
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
    run = SimpleNamespace(
        cfg=cfg,
        device=torch.device("cpu"),
        precision=Precision(None, False),
        step=Step(),
        teacher=None,
        optimizer=opt,
        epoch=0,
        global_step=0,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
        scaler=torch.amp.GradScaler("cpu", enabled=scaler_on, init_scale=4.0),
    )
    guard = NonFiniteGuard("skip", deferred=True, optimizer=opt)
    batch = {"images": torch.rand(4, 3, 1, 1), "targets": torch.rand(4, 2), "index": torch.arange(4)}
    train_step(run, batch, guard)
    before = [p.detach().clone() for p in net.parameters()]
    moments = [opt.state[p]["exp_avg"].clone() for p in net.parameters()]
    poison["on"] = True
    train_step(run, batch, guard)
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert all(torch.equal(m, opt.state[p]["exp_avg"]) for m, p in zip(moments, net.parameters()))
    assert all(float(opt.state[p]["step"]) == 1 for p in net.parameters())
    guard.check(run)
    assert guard.skipped == 1
    poison["on"] = False
    train_step(run, batch, guard)
    assert not any(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert guard.skipped == 1 and run.global_step == 3


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_nan_gradients_under_a_finite_loss(teacher, mode, policy, monkeypatch, tmp_path):
    """The 2nd step's loss stays finite but its gradient is NaN: skipped (Adam's step count 3 of 4,
    weights finite) or stopped naming the step, on both code paths."""
    from fault_helpers import _NaNGradient

    real, calls = Objective.term_values, []

    def term_values(self, student_out, *args, **kwargs):
        values = real(self, student_out, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            values = {**values, "bce": values["bce"] + _NaNGradient.apply(student_out.logits)}
        return values

    monkeypatch.setattr(Objective, "term_values", term_values)
    cfg = tiny_config(
        tmp_path / "run",
        teacher["cache"],
        method="mld",
        teacher=teacher["ckpt"],
        epochs=1,
        train={"nonfinite": policy, "log_interval": 3},
    )
    if policy == "stop":
        with pytest.raises(NonFiniteLossError, match="non-finite gradients at epoch 1 step 2 .the loss was finite"):
            fit(cfg)
        return
    assert fit(cfg)["train"]["skipped_steps"] == 1
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {3.0}
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
