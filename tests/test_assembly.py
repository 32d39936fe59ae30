"""assemble: the one assembly of a run around its models, for fit and the benchmarks."""

import pytest
import torch

import mlkd.bench.common as bench_common
from engine_helpers import TINY_MODEL, tiny_config
from mlkd.engine.assembly import assemble
from mlkd.engine.runtime import resolve_precision
from mlkd.errors import ConfigError
from mlkd.models import build_model

CPU = torch.device("cpu")
HEAD = {k: v for k, v in TINY_MODEL.items() if k != "name"}


def _models():
    torch.manual_seed(0)
    return build_model("tiny", 4, **HEAD), build_model("tiny", 4, **HEAD).eval().requires_grad_(False)


def _assemble(tmp_path, method, student, teacher, **kwargs):
    cfg = tiny_config(tmp_path / method, tmp_path / "data", method=method)
    return assemble(
        cfg,
        student,
        teacher,
        list("abcd"),
        device=CPU,
        precision=resolve_precision("off", CPU),
        **{"steps_per_epoch": 5, **kwargs},
    )


def test_assemble_sizes_the_objective_and_trains_its_parameters(tmp_path):
    student, teacher = _models()
    run = _assemble(tmp_path, "reviewkd", student, teacher)
    review = run.step.objective.terms["reviewkd"].review
    assert review.student_channels == student.feature_channels
    assert review.teacher_channels == teacher.feature_channels
    trained = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in [*student.parameters(), *review.parameters()] if p.requires_grad}
    assert run.teacher is teacher and run.train_loader is None and run.test_loader is None
    assert run.scheduler.total_steps == 5 * run.cfg.optim.epochs


def test_assemble_teacher_and_cache_rules(tmp_path):
    student, teacher = _models()
    assert _assemble(tmp_path, "vanilla", student, teacher).teacher is None  # read by no term
    with pytest.raises(ConfigError, match="needs distill.teacher"):
        _assemble(tmp_path, "l2d", student, None)
    cache = object()
    served = _assemble(tmp_path, "l2d", student, teacher, cache=cache)
    assert served.teacher is None and served.teacher_cache is cache
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _assemble(tmp_path, "vanilla", student, None, steps_per_epoch=None)


def test_the_benchmarks_assemble_as_fit_does(monkeypatch):
    calls = []
    real = bench_common.assemble
    monkeypatch.setattr(
        bench_common,
        "assemble",
        lambda cfg, *a, **k: calls.append((cfg.distill.method, k["cache"])) or real(cfg, *a, **k),
    )
    cfg = bench_common.bench_config("tiny", 32, 4, "cpu", "off", False, HEAD)
    _, teacher = _models()
    cache = object()
    for method in ("vanilla", "reviewkd", "l2d+cache"):
        bench_common.make_run(method, cfg, 4, teacher, cache)
    assert calls == [("vanilla", None), ("reviewkd", None), ("l2d", cache)]
