"""``train.amp: official`` (the official L2D code's fp16 autocast + GradScaler) and its contrast
with ``auto``, on CPU: the precision each mode resolves to per device, and the official step
path (fp16 autocast + an enabled GradScaler) skipping a step with non-finite gradients."""

from types import SimpleNamespace

import pytest
import torch

from fault_helpers import _NaNGradient
from mlkd.config import Config
from mlkd.engine.runtime import Precision, resolve_precision
from mlkd.engine.step import NonFiniteGuard, train_step
from mlkd.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)  # a device object: no GPU needed to resolve


def test_official_is_fp16_with_a_scaler_on_cuda_and_full_precision_elsewhere():
    assert resolve_precision("official", CUDA) == Precision(torch.float16, True)
    assert resolve_precision("official", CPU) == Precision(None, False)
    assert resolve_precision("official", torch.device("mps")) == Precision(None, False)
    assert resolve_precision("auto", CPU) == Precision(None, False)
    assert resolve_precision("bf16", CUDA) == Precision(torch.bfloat16, False)  # no scaler
    with pytest.raises(ConfigError, match="official"):
        resolve_precision("fp16", CPU)  # the message names the CPU-safe choices


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Set MLKD_CPU_BF16 for one test (the detection is cached: cleared before and after)."""
    from mlkd.engine import runtime

    def force(value: str) -> None:
        monkeypatch.setenv("MLKD_CPU_BF16", value)
        runtime.cpu_has_native_bf16.cache_clear()

    yield force
    monkeypatch.undo()
    runtime.cpu_has_native_bf16.cache_clear()


def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_full_precision_without(cpu_bf16):
    cpu_bf16("1")
    assert resolve_precision("auto", CPU) == Precision(torch.bfloat16, False)
    assert resolve_precision("off", CPU) == Precision(None, False)  # off stays exact
    assert resolve_precision("official", CPU) == Precision(None, False)
    cpu_bf16("0")
    assert resolve_precision("auto", CPU) == Precision(None, False)
    assert resolve_precision("auto", torch.device("mps")) == Precision(None, False)
    cpu_bf16("yes")
    with pytest.raises(ConfigError, match="MLKD_CPU_BF16='yes'"):
        resolve_precision("auto", CPU)


def test_native_bf16_detection_reads_the_cpu_flags(cpu_bf16, monkeypatch):
    """Without the override the answer is torch's CPU capability probes (AMX or AVX-512 BF16)."""
    from mlkd.engine import runtime

    cpu_bf16("")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert runtime.cpu_has_native_bf16()
    runtime.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not runtime.cpu_has_native_bf16()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="auto's choice depends on the GPU")
def test_auto_prefers_bf16_without_scaler_where_supported():
    expected = Precision(torch.bfloat16, False) if torch.cuda.is_bf16_supported() else Precision(torch.float16, True)
    assert resolve_precision("auto", CUDA) == expected
    assert resolve_precision("official", CUDA) == Precision(torch.float16, True)


def test_config_accepts_official_amp():
    assert Config.model_validate({"train": {"amp": "official"}}).train.amp == "official"
    with pytest.raises(ValueError):  # pydantic's ValidationError
        Config.model_validate({"train": {"amp": "fp32"}})


def _run(precision, scaler, poison):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images, targets, teacher_out, host_targets=None):
            out = self.net(images.flatten(1)[:, :3]).float()
            loss = ((out - targets) ** 2).sum()
            if poison["on"]:
                loss = loss + _NaNGradient.apply(out)  # finite loss, NaN gradients
            return loss, {"mse": loss.detach()}

    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    run = SimpleNamespace(
        cfg=Config.model_validate({}),
        device=CPU,
        precision=precision,
        step=Step(),
        teacher=None,
        optimizer=opt,
        epoch=0,
        global_step=0,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
        scaler=scaler,
    )
    return net, opt, run


def test_the_official_step_skips_non_finite_gradients_and_lowers_the_scale():
    """fp16 autocast + GradScaler (the official path, here on CPU): a step whose gradients are
    NaN changes no weight and no Adam state, halves the scale and does not stop the run even
    under ``train.nonfinite: stop``; the next finite step updates."""
    poison = {"on": False}
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    net, opt, run = _run(Precision(torch.float16, True), scaler, poison)
    guard = NonFiniteGuard("stop")
    batch = {"images": torch.rand(4, 3, 1, 1), "targets": torch.rand(4, 2), "index": torch.arange(4)}
    assert train_step(run, batch, guard) is not None
    before = [p.detach().clone() for p in net.parameters()]
    poison["on"] = True
    assert train_step(run, batch, guard) is not None  # not refused: the scaler decides
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert all(float(opt.state[p]["step"]) == 1 for p in net.parameters())
    assert scaler.get_scale() == 512.0
    poison["on"] = False
    train_step(run, batch, guard)
    assert not any(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert run.global_step == 3 and guard.skipped == 0


def test_without_a_scaler_the_same_step_stops_under_stop():
    """``auto``'s bf16 path has no scaler: the same NaN gradients stop the run (nonfinite: stop)."""
    from mlkd.errors import NonFiniteLossError

    poison = {"on": True}
    net, opt, run = _run(Precision(None, False), torch.amp.GradScaler("cpu", enabled=False), poison)
    batch = {"images": torch.rand(4, 3, 1, 1), "targets": torch.rand(4, 2), "index": torch.arange(4)}
    with pytest.raises(NonFiniteLossError, match="non-finite gradients"):
        train_step(run, batch, NonFiniteGuard("stop"))
