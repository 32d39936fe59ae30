"""distill.balance: bounded term weights against closed-form gradients, the running ratio step
by step, ``none`` taking the unchanged path, resumption (after an epoch and mid-epoch) bit-identical,
and the same weights on every DDP rank."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from engine_helpers import tiny_config
from mlkd.config import config_from_dict
from mlkd.engine.balance import WeightBalancer, build_balancer
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.diagnostics import term_gradient_norms
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import build_run, fit
from mlkd.errors import ConfigError, Preempted
from mlkd.losses import build_objective
from mlkd.losses.objective import Objective
from mlkd.models.output import ModelOutput

BATCHES = 4  # tiny_config: 128 training images, batch 32


def _outputs(B=6, q=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, q, generator=g, dtype=torch.float64, requires_grad=True)
    student = ModelOutput(logits=logits, label_embeddings=None, pooled=None)
    teacher = ModelOutput(
        logits=torch.randn(B, q, generator=g, dtype=torch.float64), label_embeddings=None, pooled=None
    )
    targets = (torch.rand(B, q, generator=g) < 0.5).double()
    return student, teacher, targets


def _closed_form(student, teacher, targets):
    """||d(sum BCE)/dz||, ||d mean (z - t)^2 / dz|| and ||d MLD / dz|| (weight 1)."""
    z, t = student.logits.detach(), teacher.logits
    B = z.shape[0]
    bce = (torch.sigmoid(z) - targets).norm()
    mse = (2 * (z - t) / z.numel()).norm()
    mld = ((torch.sigmoid(z) - torch.sigmoid(t)) / B).norm()  # KL(t || s) per label, summed, batch mean
    return bce.item(), mse.item(), mld.item()


@pytest.mark.parametrize("bound", [1.0, 2.0])
def test_a_term_at_100x_bce_is_capped_to_the_bound_and_one_at_half_is_untouched(bound):
    student, teacher, targets = _outputs()
    bce, mse, mld = _closed_form(student, teacher, targets)
    w_mse, w_mld = 100.0 * bce / mse, 0.5 * bce / mld  # gradients 100x and 0.5x BCE's
    objective = build_objective("mse", weights={"mse": w_mse, "mld": w_mld}).double()
    values = objective.term_values(student, teacher, targets)
    norms = term_gradient_norms(objective, values, student)
    assert norms["mse"].item() == pytest.approx(100.0 * bce, rel=1e-6)  # float32 norms
    assert norms["mld"].item() == pytest.approx(0.5 * bce, rel=1e-6)
    balancer = WeightBalancer(objective.weights, ratio=bound, momentum=0.0)
    balancer.update(norms)
    weights = balancer.step_weights()
    assert set(weights) == {"mse", "mld"}  # BCE keeps its configured weight
    assert weights["mse"].dtype == torch.float32
    assert weights["mse"].item() == pytest.approx(w_mse * bound / 100.0, rel=1e-6)
    assert torch.equal(weights["mld"], torch.tensor(w_mld, dtype=torch.float32))  # never raised, never lowered
    # the capped term now pulls on the logits with exactly `bound` x BCE's gradient
    (grad,) = torch.autograd.grad(weights["mse"].double() * values["mse"], student.logits, retain_graph=True)
    assert grad.norm().item() / bce == pytest.approx(bound, rel=1e-6)
    total = objective.weighted_sum(values, weights)
    expected = values["bce"] + weights["mse"].double() * values["mse"] + weights["mld"].double() * values["mld"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    # with momentum 0.9 the running ratio converges to 100 and gives the same weight
    converging = WeightBalancer(objective.weights, ratio=bound, momentum=0.9)
    for _ in range(300):
        converging.update(norms)
    assert converging.step_weights()["mse"].item() == pytest.approx(w_mse * bound / 100.0, rel=1e-5)


def test_running_ratio_step_by_step():
    """Momentum 0.5; BCE's norm 2; cd's norms 8, 16, NaN, 4 (ratios 4, 8, -, 2); id never
    finite; mld without gradient (0); bound 2."""
    balancer = WeightBalancer({"bce": 1.0, "mld": 10.0, "cd": 100.0, "id": 1000.0}, ratio=2.0, momentum=0.5)
    assert torch.equal(balancer.factors(), torch.ones(3))  # before a measurement: as configured
    nan, expected_ema, expected_cd = float("nan"), [4.0, 6.0, 6.0, 4.0], [50.0, 100 / 3, 100 / 3, 50.0]
    for cd, ema, weight in zip((8.0, 16.0, nan, 4.0), expected_ema, expected_cd):
        balancer.update(
            {"bce": torch.tensor(2.0), "mld": torch.tensor(0.0), "cd": torch.tensor(cd), "id": torch.tensor(nan)}
        )
        assert balancer.ema[1].item() == ema
        weights = balancer.step_weights()
        assert weights["cd"].item() == pytest.approx(weight, rel=1e-6)
        assert weights["mld"].item() == 10.0 and weights["id"].item() == 1000.0
    assert balancer.seen.tolist() == [True, True, False] and balancer.updates == 4
    summary = balancer.summary()
    assert summary["steps"] == 4 and summary["bound"] == 2.0
    cd = summary["terms"]["cd"]
    assert cd["effective"] == pytest.approx(sum(expected_cd) / 4, rel=1e-6)
    assert cd["min"] == pytest.approx(100 / 3, rel=1e-6) and cd["ratio"] == 4.0 and cd["capped"]
    assert summary["terms"]["id"] == {
        "weight": 1000.0,
        "effective": 1000.0,
        "min": 1000.0,
        "ratio": None,
        "capped": False,
    }
    assert not summary["terms"]["mld"]["capped"] and summary["terms"]["mld"]["ratio"] == 0.0
    assert balancer.summary() is None  # the epoch's figures were reset


def test_state_dict_round_trip_continues_identically():
    def fresh():
        return WeightBalancer({"bce": 1.0, "cd": 100.0, "id": 1000.0}, ratio=0.5, momentum=0.9)

    def measure(balancer, k):
        g = torch.Generator().manual_seed(k)
        balancer.update({name: torch.rand((), generator=g) * 10 for name in ("bce", "cd", "id")})
        return balancer.step_weights()

    a = fresh()
    for k in range(5):
        measure(a, k)
    b = fresh()
    b.load_state_dict(a.state_dict())
    for k in range(5, 9):
        wa, wb = measure(a, k), measure(b, k)
        assert all(torch.equal(wa[n], wb[n]) for n in wa)
    assert a.summary() == b.summary()  # the epoch's sums travelled with the state
    with pytest.raises(ConfigError, match="balanced terms"):
        WeightBalancer({"bce": 1.0, "cd": 100.0}, ratio=1.0).load_state_dict(a.state_dict())


def test_config_keys_and_errors(tmp_path):
    cfg = tiny_config(
        tmp_path / "r",
        tmp_path / "c",
        distill={"balance": "bounded", "balance_ratio": 0.3, "balance_momentum": 0.0, "balance_every": 5},
    )
    assert (cfg.distill.balance, cfg.distill.balance_ratio, cfg.distill.balance_every) == ("bounded", 0.3, 5)
    for key, value in (("balance", "capped"), ("balance_ratio", 0), ("balance_momentum", 1.0), ("balance_every", 0)):
        with pytest.raises(ConfigError, match=f"distill.{key}"):
            config_from_dict({"distill": {key: value}})
    without_bce = build_objective("mse", weights={"bce": 0.0})
    with pytest.raises(ConfigError, match="distill.balance=bounded measures each distillation term against bce"):
        build_balancer(cfg, without_bce, "cpu")
    assert build_balancer(cfg, build_objective("vanilla"), "cpu") is None  # nothing to balance
    assert build_balancer(tiny_config(tmp_path / "r", tmp_path / "c"), build_objective("l2d"), "cpu") is None


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("balance")
    fit(tiny_config(root / "teacher", root / "cache", epochs=1))
    return root


def _config(root, name, epochs=2, train=None, **distill):
    return tiny_config(
        root / name,
        root / "cache",
        method="l2d",
        epochs=epochs,
        teacher=str(root / "teacher" / "checkpoints" / "last.pt"),
        distill=distill,
        train={"seed": 0, "device": "cpu", "progress": "off", **(train or {})},
    )


def _train(root, name, train=None, **distill):
    fit(_config(root, name, train=train, **distill))
    return read_jsonl(root / name / "metrics.jsonl"), load_checkpoint(root / name / "checkpoints" / "last.pt")


def _without_timing(records):
    return [
        {**r, "train": {k: v for k, v in r["train"].items() if k not in ("seconds", "images_per_s")}} for r in records
    ]


def _same_model(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_none_takes_the_objectives_own_path(teacher, monkeypatch):
    run = build_run(_config(teacher, "none-built"))
    assert run.balancer is None
    calls = []
    real = Objective.forward
    monkeypatch.setattr(Objective, "forward", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    fit(_config(teacher, "none-path", train={"diagnostics_every": 0}))
    assert len(calls) == 2 * BATCHES  # every step: Objective.forward, the weighted sum of the configured weights
    assert "balance" not in load_checkpoint(teacher / "none-path" / "checkpoints" / "last.pt")


def test_bounded_changes_the_run_and_an_unreached_bound_changes_nothing(teacher, caplog):
    plain, plain_ckpt = _train(teacher, "none")
    loose, loose_ckpt = _train(teacher, "loose", balance="bounded", balance_ratio=1e30)
    with caplog.at_level(logging.INFO, logger="mlkd"):
        tight, tight_ckpt = _train(
            teacher, "tight", train={"diagnostics_every": 1}, balance="bounded", balance_ratio=0.5
        )
    # a bound no term reaches: the same numbers as balance none, bit for bit
    assert _same_model(plain_ckpt["model"], loose_ckpt["model"])
    assert [{k: v for k, v in r.items() if k != "balance"} for r in _without_timing(loose)] == _without_timing(plain)
    assert all(not e["capped"] and e["effective"] == e["weight"] for r in loose for e in r["balance"]["terms"].values())
    # a bound the embedding terms exceed: their weights are lowered, the run differs
    assert not _same_model(plain_ckpt["model"], tight_ckpt["model"])
    assert tight[-1]["eval"] != plain[-1]["eval"]
    for record in tight:
        balance = record["balance"]
        assert balance["bound"] == 0.5 and balance["steps"] == BATCHES
        assert set(balance["terms"]) == {"mld", "cd", "id"}
        cd = balance["terms"]["cd"]
        assert cd["capped"] and cd["min"] <= cd["effective"] < cd["weight"] == 100.0
        # at the epoch's last step the weight is weight x bound / running ratio
        assert cd["ratio"] > 0.5
    last = tight_ckpt["balance"]
    cd = last["terms"].index("cd")
    assert last["updates"] == 2 * BATCHES and last["epoch_steps"] == 0
    assert "epoch 2: distill.balance capped the weight of cd 100 -> " in caplog.text
    assert last["ema"][cd].item() == pytest.approx(tight[-1]["balance"]["terms"]["cd"]["ratio"], rel=1e-6)
    # the diagnostics measure the gradients of the weights in force: the capped terms pull at
    # about the bound (the running ratio lags the measurement), where at full weight CD pulls harder
    for record in tight:
        terms = record["diagnostics"]["terms"]
        assert terms["cd"]["ratio"] == pytest.approx(0.5, abs=0.15)
        assert terms["id"]["ratio"] == pytest.approx(0.5, abs=0.15)
        assert record["balance"]["terms"]["cd"]["ratio"] > 5  # the configured weight's ratio


def test_balance_every_measures_those_steps(teacher):
    records, ckpt = _train(teacher, "every3", balance="bounded", balance_ratio=0.5, balance_every=3)
    assert ckpt["balance"]["updates"] == 3  # global steps 0, 3, 6 of 8
    assert records[0]["balance"]["steps"] == BATCHES


@pytest.fixture(scope="module")
def reference(teacher):
    """The uninterrupted bounded run the interrupted ones must reproduce."""
    records, ckpt = _train(teacher, "reference", balance="bounded", balance_ratio=0.5, balance_every=2)
    return records, ckpt


def _assert_same_run(root, name, reference):
    records, ckpt = reference
    state = load_checkpoint(root / name / "checkpoints" / "last.pt")
    assert _same_model(state["model"], ckpt["model"])
    for key in ("ema", "seen", "epoch_sum", "epoch_min"):
        assert torch.equal(state["balance"][key], ckpt["balance"][key]), key
    assert state["balance"]["updates"] == ckpt["balance"]["updates"]
    assert _without_timing(read_jsonl(root / name / "metrics.jsonl")) == _without_timing(records)


def test_resume_after_an_epoch_is_bit_identical(teacher, reference):
    cfg = _config(teacher, "after-epoch", balance="bounded", balance_ratio=0.5, balance_every=2)
    fit(cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"stop_epoch": 1})}))
    assert load_checkpoint(teacher / "after-epoch" / "checkpoints" / "last.pt")["epoch"] == 1
    fit(cfg, resume=True)
    _assert_same_run(teacher, "after-epoch", reference)


@pytest.mark.parametrize("step", [2, BATCHES + 3])
def test_resume_after_a_preemption_mid_epoch_is_bit_identical(teacher, reference, monkeypatch, step):
    """SIGTERM during the ``step``-th step (1-based): the epoch's weight sums so far and the
    running ratios travel in the checkpoint."""
    name = f"preempted-{step}"
    cfg = _config(teacher, name, balance="bounded", balance_ratio=0.5, balance_every=2)
    real, calls = Objective.term_values, []

    def term_values(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Objective, "term_values", term_values)
    with pytest.raises(Preempted, match="stopped by SIGTERM at epoch"):
        fit(cfg)
    saved = load_checkpoint(teacher / name / "checkpoints" / "last.pt")
    assert saved["global_step"] == step and saved["balance"]["epoch_steps"] == (step - 1) % BATCHES + 1
    monkeypatch.undo()
    fit(cfg, resume=True)
    _assert_same_run(teacher, name, reference)


@pytest.mark.slow  # torchrun, 2 gloo processes
def test_every_ddp_rank_applies_the_same_weights(teacher, tmp_path):
    from fault_helpers import cli_env, write_config

    cfg = _config(teacher, "ddp", epochs=1, train={"diagnostics_every": 1}, balance="bounded", balance_ratio=0.5)
    config = write_config(cfg, tmp_path / "ddp.yaml")
    dump = tmp_path / "dump"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mlkd.cli",
        "--plugin",
        "balance_plugin",
        "distill",
        "--config",
        str(config),
    ]
    done = subprocess.run(
        cmd, env={**cli_env(), "MLKD_BALANCE_DUMP": str(dump)}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    ranks = [torch.load(dump / f"rank{r}-epoch1.pt", weights_only=True) for r in (0, 1)]
    # each rank measured its own batches: the rank-local gradient ratios differ ...
    local = [r["diagnostics"]["terms"]["cd"]["grad"] for r in ranks]
    assert local[0] != local[1]
    # ... but the running ratios are the ranks' averaged norms, so the weights are the same
    for key in ("ema", "seen", "epoch_sum", "epoch_min"):
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
    assert ranks[0]["balance"] == ranks[1]["balance"]
    assert ranks[0]["balance"]["terms"]["cd"]["capped"]
    assert read_jsonl(teacher / "ddp" / "metrics.jsonl")[-1]["balance"] == ranks[0]["balance"]
    assert not math.isnan(ranks[0]["balance"]["terms"]["id"]["effective"])


def test_bounded_with_the_teacher_cache_and_bf16_autocast(teacher):
    """The teacher's outputs from the teacher-output cache, the student under bf16 autocast:
    the norms and running ratios stay float32 and finite, and the embedding terms are capped."""
    cfg = _config(
        teacher,
        "cache-bf16",
        train={"amp": "bf16", "diagnostics_every": 2},
        balance="bounded",
        balance_ratio=0.5,
        cache=str(teacher / "teacher-cache"),
    )
    records = [fit(cfg)]
    state = load_checkpoint(teacher / "cache-bf16" / "checkpoints" / "last.pt")["balance"]
    assert state["ema"].dtype == torch.float32 and torch.isfinite(state["ema"]).all() and state["seen"].all()
    assert (teacher / "teacher-cache").is_dir()
    terms = records[-1]["balance"]["terms"]
    assert terms["cd"]["capped"] and terms["cd"]["effective"] < 100.0
    assert all(math.isfinite(entry["effective"]) for entry in terms.values())
    assert math.isfinite(records[-1]["eval"]["thr@0.5"]["mAP"])


def test_l2d_bounded_is_l2d_with_its_weights_bounded(tmp_path):
    """Method l2d-bounded: L2D's terms and weights, bounded whatever distill.balance says, at
    distill.balance_ratio (default 0.3, the ratio chosen on the scenes' validation split)."""
    from mlkd.losses.methods import get_method, row_label

    cfg = tiny_config(tmp_path / "r", tmp_path / "c", distill={"method": "l2d-bounded"})
    assert cfg.distill.balance == "none" and cfg.distill.balance_ratio == 0.3
    assert (
        get_method("l2d-bounded").weights == get_method("l2d").weights == {"bce": 1, "mld": 10, "cd": 100, "id": 1000}
    )
    balancer = build_balancer(cfg, build_objective("l2d-bounded"), "cpu")
    assert isinstance(balancer, WeightBalancer) and balancer.ratio == 0.3
    assert row_label("l2d-bounded") == "L2D bounded"


def test_a_grid_row_carries_the_balance_setting(tmp_path):
    """Any method, bounded: a grid row names the setting in its config overrides."""
    from mlkd.reproduce.grid import load_grid
    from test_reproduce_sweep import write_grid

    row = {
        "method": "l2d",
        "name": "L2D bounded",
        "slug": "l2d-bounded",
        "config": {"distill": {"balance": "bounded", "balance_ratio": 1.0}},
    }
    grid = load_grid(write_grid(tmp_path, tmp_path / "cache", methods=["teacher", "l2d", row], seeds=[0]))
    by_label = {run.label: run.config.distill for run in grid.runs if run.role == "distill"}
    assert by_label["L2D bounded"].balance == "bounded" and by_label["L2D"].balance == "none"
    assert by_label["L2D bounded"].weights == by_label["L2D"].weights
