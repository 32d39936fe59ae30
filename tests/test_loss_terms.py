"""The LossTerm interface: requires (several fields), setup from OutputShapes, prepare,
groups (one call for CD + ID), names from the registry."""

import pytest
import torch

import mlkd.losses.terms as terms_module
from mlkd.errors import ConfigError
from mlkd.losses import LOSS_TERMS, LossTerm, ReviewKD, build_objective, cd_loss, id_loss
from mlkd.losses.embedding import pair_plan
from mlkd.models import OutputShapes, build_model, output_shapes
from mlkd.models.output import ModelOutput
from test_objective import TARGETS, output


@pytest.fixture
def registry(monkeypatch):
    """LOSS_TERMS, restored after the test (terms registered here do not leak)."""
    monkeypatch.setattr(LOSS_TERMS, "_entries", dict(LOSS_TERMS._entries))
    return LOSS_TERMS


def test_names_come_from_the_registry(registry):
    for name in LOSS_TERMS.names():
        assert LOSS_TERMS.get(name).name == name

    @registry.register("my_term")
    class Mine(LossTerm):
        pass

    assert Mine.name == "my_term"


def test_a_user_term_reads_two_fields(registry):
    @registry.register("logits_pooled")
    class LogitsPooled(LossTerm):
        """(mean student logit - mean teacher logit)^2 + mean |pooled_s| (student only)."""

        def requires(self):
            return ("logits", "pooled")

        def compute(self, s, t, targets, prepared=None):
            return (s["logits"].mean() - t["logits"].mean()) ** 2 + s["pooled"].abs().mean()

    student, teacher = output(0, grad=True), output(1)
    total, values = build_objective("vanilla", weights={"logits_pooled": 0.5})(student, teacher, TARGETS)
    expected = (student.logits.mean() - teacher.logits.mean()) ** 2 + student.pooled.abs().mean()
    torch.testing.assert_close(values["logits_pooled"], expected.detach())
    torch.testing.assert_close(total, values["bce"] + 0.5 * expected, rtol=0, atol=0)
    total.backward()
    assert student.pooled.grad is not None and student.logits.grad is not None
    no_pooled = ModelOutput(logits=student.logits, label_embeddings=None, pooled=None)
    with pytest.raises(
        ConfigError,
        match=r"the 'logits_pooled' term \(method 'vanilla'\) needs "
        r"ModelOutput.pooled \[B, F\] from the teacher, which has none",
    ):
        build_objective("vanilla", weights={"logits_pooled": 1.0})(student, no_pooled, TARGETS)


def test_requires_is_checked_against_model_output(registry):
    @registry.register("bad_field")
    class BadField(LossTerm):
        def requires(self):
            return ("logit",)

    with pytest.raises(ConfigError, match="the 'bad_field' term \\(method 'vanilla'\\) requires \\['logit'\\].*logits"):
        build_objective("vanilla", weights={"bad_field": 1.0})


def _spy(monkeypatch, name):
    calls = []
    real = getattr(terms_module, name)
    monkeypatch.setattr(terms_module, name, lambda *a, **k: calls.append(a[1:]) or real(*a, **k))
    return calls


@pytest.mark.parametrize("variant", ["official", "paper"])
@pytest.mark.parametrize("host", [False, True])
def test_cd_id_group_equals_the_separate_terms_in_one_call(monkeypatch, variant, host):
    student, teacher = output(0), output(1)
    e_s, e_t = student.label_embeddings, teacher.label_embeddings
    oracle = {"cd": cd_loss(e_s, e_t, TARGETS, variant), "id": id_loss(e_s, e_t, TARGETS, variant)}
    fused, plans = _spy(monkeypatch, "cd_id_losses"), _spy(monkeypatch, "pair_plan")
    monkeypatch.setattr(terms_module, "cd_loss", None)  # the group must not call them
    monkeypatch.setattr(terms_module, "id_loss", None)
    objective = build_objective("l2d", options={"cd": {"variant": variant}, "id": {"variant": variant}})
    _, values = objective(student, teacher, TARGETS, TARGETS.clone() if host else None)
    assert len(fused) == 1 and plans == ([(True, True)] if host else [])
    assert list(values) == ["cd", "id", "bce", "mld"]  # groups first (the order fit logs them in)
    for name in oracle:
        torch.testing.assert_close(values[name], oracle[name], rtol=0, atol=0)


def test_ungrouped_terms_prepare_their_own_plan(monkeypatch):
    plans = _spy(monkeypatch, "pair_plan")
    objective = build_objective("l2d", options={"id": {"variant": "paper"}})  # two groups of one
    student, teacher = output(0), output(1)
    _, values = objective(student, teacher, TARGETS, TARGETS.clone())
    assert plans == [(True, False), (False, True)]
    torch.testing.assert_close(
        values["id"],
        id_loss(student.label_embeddings, teacher.label_embeddings, TARGETS, "paper", pair_plan(TARGETS, False, True)),
    )


def test_a_user_group_is_computed_by_one_call(registry):
    calls = []

    class Moment(LossTerm):
        power = 1

        def group_key(self):
            return "moments"

        def compute(self, s, t, targets, prepared=None):
            return (s - t).pow(self.power).mean()

        @classmethod
        def prepare_group(cls, terms, host_targets):
            return host_targets.sum()

        @classmethod
        def compute_group(cls, terms, student, teacher, targets, prepared=None):
            calls.append(prepared)
            diff = student.logits - teacher.logits
            return {name: diff.pow(term.power).mean() for name, term in terms.items()}

    registry.register("m1")(type("M1", (Moment,), {"power": 1}))
    registry.register("m2")(type("M2", (Moment,), {"power": 2}))
    objective = build_objective("vanilla", weights={"m1": 1.0, "m2": 1.0})
    student, teacher = output(0), output(1)
    _, values = objective(student, teacher, TARGETS, TARGETS)
    assert len(calls) == 1 and calls[0] == TARGETS.sum()
    for name, term in objective.terms.items():  # oracle: each term on its own
        if name != "bce":
            torch.testing.assert_close(values[name], term(student, teacher, TARGETS), rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["stages", "official"])
def test_reviewkd_setup_from_shapes_is_reviewkd_built_directly(variant):
    student = OutputShapes(num_classes=5, embed_dim=8, pooled_dim=6, stage_channels=(4, 8))
    teacher = OutputShapes(num_classes=5, embed_dim=8, pooled_dim=10, stage_channels=(6, 12))
    torch.manual_seed(0)
    objective = build_objective(
        "reviewkd",
        options={"reviewkd": {"variant": variant, "mid_channel": 4}},
        student_shapes=student,
        teacher_shapes=teacher,
    )
    after = torch.rand(3)  # the builder drew exactly what the direct construction draws
    extra = variant == "official"
    torch.manual_seed(0)
    direct = ReviewKD([4, 8] + [6] * extra, [6, 12] + [10] * extra, mid_channel=4)
    torch.testing.assert_close(after, torch.rand(3), rtol=0, atol=0)
    state, reference = objective.state_dict(), direct.state_dict()
    assert list(state) == [f"terms.reviewkd.review.{key}" for key in reference]  # checkpoints still load
    for key, value in reference.items():
        assert torch.equal(state[f"terms.reviewkd.review.{key}"], value)
    legacy = build_objective(
        "reviewkd",
        options={"reviewkd": {"variant": variant, "mid_channel": 4}},
        student_channels=[4, 8],
        teacher_channels=[6, 12],
        student_pooled_dim=6,
        teacher_pooled_dim=10,
    )
    assert list(legacy.state_dict()) == list(state)


def test_reviewkd_without_shapes_and_output_shapes_of_a_model():
    with pytest.raises(ConfigError, match="stage channel lists.*student_channels"):
        build_objective("reviewkd", student_shapes=OutputShapes(stage_channels=(4,)))
    with pytest.raises(RuntimeError, match="setup"):
        LOSS_TERMS.get("reviewkd")()(output(0), output(1), TARGETS)
    net = build_model("tiny", 5, embed_dim=16, ffn_dim=32, num_heads=4)
    shapes = output_shapes(net)
    assert shapes == OutputShapes(5, 16, net.pooled_dim, tuple(net.feature_channels))
    out = net(torch.rand(2, 3, 32, 32))
    assert out.pooled.shape[1] == shapes.pooled_dim and out.label_embeddings.shape[2] == shapes.embed_dim
    assert output_shapes(None) is None
