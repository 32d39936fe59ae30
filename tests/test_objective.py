"""Objective: named methods, weights and options, fused CD/ID, errors, trainable parts."""

import pytest
import torch

import mlkd.losses.terms as terms_module
from mlkd.errors import ConfigError
from mlkd.losses import (
    LOSS_TERMS,
    METHODS,
    Objective,
    bce_loss,
    build_objective,
    cd_loss,
    id_loss,
    logits_mse_loss,
    mld_loss,
    pkt_loss,
    rkd_loss,
)
from mlkd.models.output import ModelOutput

B, Q, D = 6, 5, 8
TARGETS = torch.tensor(
    [[1, 1, 0, 0, 1], [1, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 1], [1, 0, 1, 1, 1]],
    dtype=torch.float32,
)


def output(seed, channels=(4, 8), with_embeddings=True, grad=False):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(grad)

    return ModelOutput(
        logits=rand(B, Q),
        label_embeddings=rand(B, Q, D) if with_embeddings else None,
        pooled=rand(B, 3 * seed + 4),
        features=[rand(B, channels[0], 8, 8), rand(B, channels[1], 4, 4)],
    )


def test_l2d_total_is_the_weighted_functional_sum():
    student, teacher = output(0, grad=True), output(1)
    total, values = build_objective("l2d")(student, teacher, TARGETS)
    s, t, y = student, teacher, TARGETS
    parts = {
        "bce": bce_loss(s.logits, y),
        "mld": mld_loss(s.logits, t.logits),
        "cd": cd_loss(s.label_embeddings, t.label_embeddings, y),
        "id": id_loss(s.label_embeddings, t.label_embeddings, y),
    }
    expected = parts["bce"] + 10 * parts["mld"] + 100 * parts["cd"] + 1000 * parts["id"]
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=1e-6)
    assert set(values) == set(parts)
    for name, value in values.items():
        assert not value.requires_grad
        torch.testing.assert_close(value, parts[name].detach(), rtol=1e-6, atol=1e-7)
    total.backward()
    assert torch.isfinite(student.label_embeddings.grad).all()


def test_cd_and_id_share_one_call(monkeypatch):
    calls = []
    real = terms_module.cd_id_losses

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(terms_module, "cd_id_losses", counting)
    monkeypatch.setattr(terms_module, "cd_loss", None)  # must not be called
    monkeypatch.setattr(terms_module, "id_loss", None)
    build_objective("l2d")(output(0), output(1), TARGETS)
    assert len(calls) == 1


def test_mixed_variants_are_computed_separately():
    student, teacher = output(0), output(1)
    objective = build_objective("l2d", options={"id": {"variant": "paper"}})
    _, values = objective(student, teacher, TARGETS)
    e_s, e_t = student.label_embeddings, teacher.label_embeddings
    torch.testing.assert_close(values["cd"], cd_loss(e_s, e_t, TARGETS))
    torch.testing.assert_close(values["id"], id_loss(e_s, e_t, TARGETS, "paper"))


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_runs(method):
    objective = build_objective(method, student_channels=[4, 8], teacher_channels=[6, 12])
    student, teacher = output(0, grad=True), output(1, channels=(6, 12))
    total, values = objective(student, teacher, TARGETS)
    assert set(values) == set(METHODS.get(method).weights)
    assert total.dim() == 0 and torch.isfinite(total)
    total.backward()
    assert objective.needs_teacher == (method != "vanilla")


def test_weight_overrides_add_and_remove_terms():
    student, teacher = output(0), output(1)
    objective = build_objective("l2d", weights={"mld": 100, "mse": 2.0, "id": 0})
    assert objective.weights == {"bce": 1.0, "mld": 100.0, "cd": 100.0, "mse": 2.0}
    total, values = objective(student, teacher, TARGETS)
    s, t = student, teacher
    expected = (
        bce_loss(s.logits, TARGETS)
        + 100 * mld_loss(s.logits, t.logits)
        + 100 * cd_loss(s.label_embeddings, t.label_embeddings, TARGETS)
        + 2 * logits_mse_loss(s.logits, t.logits)
    )
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=1e-6)
    assert "id" not in values


def test_options_reach_the_terms():
    student, teacher = output(0), output(1)
    objective = build_objective(
        "rkd",
        weights={"pkt": 3.0},
        options={"bce": {"reduction": "mean"}, "rkd": {"distance_weight": 1.0, "angle_weight": 0.0}},
    )
    total, _ = objective(student, teacher, TARGETS)
    expected = (
        bce_loss(student.logits, TARGETS, "mean")
        + rkd_loss(student.pooled, teacher.pooled, 1.0, 0.0)
        + 3 * pkt_loss(student.pooled, teacher.pooled)
    )
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=1e-6)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="^unknown method 'l3d'.*; choose one of: vanilla, .*, l2d, l2d-bounded$"):
        build_objective("l3d")
    with pytest.raises(ValueError, match=r"^unknown method 'L2D' \(did you mean 'l2d'\?\); choose one of"):
        build_objective("L2D")
    with pytest.raises(ConfigError, match=r"unknown loss term.*choose from: bce, cd"):
        build_objective("l2d", weights={"kd": 1.0})
    with pytest.raises(ConfigError, match="unknown loss term"):
        build_objective("l2d", options={"kd": {}})
    with pytest.raises(ConfigError, match="does not use"):
        build_objective("vanilla", options={"mld": {"temperature": 2.0}})
    with pytest.raises(ConfigError, match="bad options for loss term 'mld'"):
        build_objective("mld", options={"mld": {"temprature": 2.0}})
    with pytest.raises(ConfigError, match="variant"):
        build_objective("l2d", options={"cd": {"variant": "offical"}})
    with pytest.raises(ConfigError, match="student_channels"):
        build_objective("reviewkd")
    with pytest.raises(ConfigError, match="weight 0"):
        build_objective("vanilla", weights={"bce": 0})
    used = {term for method in METHODS.values() for term in method.weights}
    assert used <= set(LOSS_TERMS.names())  # every built-in method's terms are registered


def test_missing_outputs_say_which_method_needs_what():
    objective = build_objective("mld+cd")
    with pytest.raises(
        ConfigError,
        match=r"the 'cd' term \(method 'mld\+cd'\) needs ModelOutput.label_embeddings "
        r"\[B, q, D\] from the student, which has none; a linear head has none "
        r"— use mlkd.models.LabelWiseHead",
    ):
        objective(output(0, with_embeddings=False), output(1), TARGETS)
    with pytest.raises(
        ConfigError, match=r"^the 'mld' term \(method 'mld\+cd'\) needs the teacher's ModelOutput, but teacher is None"
    ):
        objective(output(0), None, TARGETS)
    total, _ = build_objective("vanilla")(output(0), None, TARGETS)  # BCE needs no teacher
    assert torch.isfinite(total)


def test_reviewkd_parameters_train_with_the_student():
    objective = build_objective("reviewkd", student_channels=[4, 8], teacher_channels=[6, 12])
    assert isinstance(objective, Objective)
    params = list(objective.parameters())
    assert params
    total, values = objective(output(0, grad=True), output(1, channels=(6, 12)), TARGETS)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert values["reviewkd"] > 0
