"""The public Python API (``import mlkd``) and examples/l2d_in_your_loop.py, which uses it."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mlkd
from mlkd.errors import ConfigError
from mlkd.models import LinearHead
from oracles import bce_oracle, cd_loss_loop, id_loss_loop, mld_oracle

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "l2d_in_your_loop.py"
B, Q, D = 6, 5, 8
TARGETS = torch.tensor(
    [[1, 1, 0, 1, 0], [1, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 0, 1], [0, 0, 0, 0, 1], [1, 0, 1, 1, 1]],
    dtype=torch.float32,
)


def embeddings_output(seed: int, dim: int = D) -> mlkd.ModelOutput:
    g = torch.Generator().manual_seed(seed)
    return mlkd.ModelOutput(logits=torch.randn(B, Q, generator=g), label_embeddings=torch.randn(B, Q, dim, generator=g))


def test_public_names_resolve_to_their_modules():
    from mlkd.losses.embedding import PairPlan, pair_plan
    from mlkd.losses.objective import Objective, build_objective
    from mlkd.models import build_model
    from mlkd.models.head import LabelWiseHead
    from mlkd.models.output import ModelOutput

    expected = {
        "Objective": Objective,
        "build_objective": build_objective,
        "ModelOutput": ModelOutput,
        "LabelWiseHead": LabelWiseHead,
        "build_model": build_model,
        "pair_plan": pair_plan,
        "PairPlan": PairPlan,
    }
    assert {name: getattr(mlkd, name) for name in expected} == expected
    assert set(mlkd.__all__) == {"__version__", *expected}
    with pytest.raises(AttributeError, match="no attribute 'Objectiv'"):
        mlkd.Objectiv  # noqa: B018


def test_import_mlkd_does_not_import_torch():
    code = "import sys, mlkd; print('torch' in sys.modules, mlkd.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout.split()
    assert out == ["False", mlkd.__version__]


def test_model_output_needs_only_logits_and_l2d_reads_logits_and_embeddings():
    logits = torch.zeros(B, Q)
    out = mlkd.ModelOutput(logits=logits)
    assert out.label_embeddings is None and out.pooled is None and out.features == [] and out.attention is None
    student, teacher = embeddings_output(0), embeddings_output(1, dim=12)  # widths may differ
    loss, parts = mlkd.build_objective("l2d")(student, teacher, TARGETS)
    s, t = student.label_embeddings, teacher.label_embeddings
    expected = {
        "bce": bce_oracle(student.logits, TARGETS),
        "mld": mld_oracle(student.logits, teacher.logits),
        "cd": cd_loss_loop(s, t, TARGETS),
        "id": id_loss_loop(s, t, TARGETS),
    }
    assert sorted(parts) == ["bce", "cd", "id", "mld"] and list(criterion_weights("l2d")) == ["bce", "mld", "cd", "id"]
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        loss,
        expected["bce"] + 10 * expected["mld"] + 100 * expected["cd"] + 1000 * expected["id"],
        rtol=1e-5,
        atol=1e-5,
    )


def criterion_weights(method: str) -> dict:
    return mlkd.build_objective(method).weights


def test_the_pair_plan_from_host_labels_gives_the_same_loss():
    criterion = mlkd.build_objective("l2d")
    student, teacher = embeddings_output(2), embeddings_output(3)
    plain, _ = criterion(student, teacher, TARGETS)
    planned, _ = criterion(student, teacher, TARGETS, host_targets=TARGETS.clone())
    torch.testing.assert_close(planned, plain, rtol=0, atol=0)
    plan = mlkd.pair_plan(TARGETS)
    # CD: classes with 4, 3, 4, 3, 3 positives -> 6+3+6+3+3 pairs; ID: images with 3, 3, 2, 4, 1, 4
    # positives -> 3+3+1+6+0+6 pairs
    assert isinstance(plan, mlkd.PairPlan) and plan.a.numel() == 21 + 19
    assert plan.counts.tolist() == [4, 3, 4, 3, 3, 3, 3, 2, 4, 1, 4]


def test_a_linear_head_output_names_the_term_and_the_field():
    head = LinearHead(in_dim=7, num_classes=Q)
    logits, embeddings, _ = head(torch.randn(B, 7, 2, 2))
    student = mlkd.ModelOutput(logits=logits, label_embeddings=embeddings)
    with pytest.raises(ValueError) as info:
        mlkd.build_objective("l2d")(student, embeddings_output(1), TARGETS)
    assert str(info.value) == (
        "the 'cd' term (method 'l2d') needs ModelOutput.label_embeddings [B, q, D] from the student, "
        "which has none; a linear head has none — use mlkd.models.LabelWiseHead (model.head: label_wise "
        "in a config)"
    )
    with pytest.raises(ValueError, match=r"^the 'rkd' term \(method 'rkd'\) needs ModelOutput.pooled \[B, F\]"):
        mlkd.build_objective("rkd")(student, embeddings_output(1), TARGETS)


@pytest.mark.parametrize("role", ["student", "teacher"])
@pytest.mark.parametrize(
    "wrong", [(torch.zeros(B, Q),), {"logits": torch.zeros(B, Q)}, torch.zeros(B, Q)], ids=["tuple", "dict", "tensor"]
)
def test_objective_refuses_other_inputs_with_a_type_error(role, wrong):
    good = embeddings_output(0)
    args = (wrong, good) if role == "student" else (good, wrong)
    with pytest.raises(
        TypeError,
        match=rf"^Objective: {role} must be a mlkd.ModelOutput .*, got "
        rf"{type(wrong).__name__}; wrap the model's outputs in a ModelOutput",
    ):
        mlkd.build_objective("l2d")(*args, TARGETS)
    with pytest.raises(TypeError, match="^Objective: targets must be a tensor"):
        mlkd.build_objective("l2d")(good, good, TARGETS.tolist())


def test_python_errors_are_worded_for_python_callers():
    with pytest.raises(ValueError) as info:
        mlkd.build_objective("L2D")
    assert str(info.value) == (
        "unknown method 'L2D' (did you mean 'l2d'?); choose one of: vanilla, rkd, "
        "pkt, reviewkd, mse, ps, mld, mld+cd, mld+id, l2d, l2d-bounded"
    )
    with pytest.raises(ValueError, match=r"^loss term 'mld': option 'temperature' must be > 0, got -1$"):
        mlkd.build_objective("l2d", options={"mld": {"temperature": -1}})
    for call in (lambda: mlkd.build_objective("L2D"), lambda: mlkd.build_objective("l2d", weights={"kd": 1})):
        with pytest.raises(ConfigError) as info:
            call()
        assert "distill." not in str(info.value)  # no config wording on the Python path


# ----------------------------------------------------------------- the example


def _run_example(monkeypatch, steps: int):
    """Run the example's main() with build_objective spied on: (history, [(student_out,
    teacher_out, targets, host_targets) per call], the objective built)."""
    calls, built = [], []
    real = mlkd.build_objective

    def spy(method, *args, **kwargs):
        objective = real(method, *args, **kwargs)
        built.append((method, objective))
        forward = objective.forward

        def record(student, teacher, targets, host_targets=None):
            calls.append((student, teacher, targets.clone(), host_targets))
            return forward(student, teacher, targets, host_targets)

        objective.forward = record
        return objective

    monkeypatch.setattr(mlkd, "build_objective", spy)
    namespace = runpy.run_path(str(EXAMPLE), run_name="example")
    history = namespace["main"](steps=steps)
    return history, calls, built


def test_example_loss_is_the_paper_l2d_objective_applied_by_hand(monkeypatch):
    history, calls, built = _run_example(monkeypatch, steps=6)
    assert [method for method, _ in built] == ["l2d"]
    assert built[0][1].weights == {"bce": 1.0, "mld": 10.0, "cd": 100.0, "id": 1000.0}
    assert len(history) == len(calls) == 6
    for record, (student, teacher, targets, host) in zip(history, calls):
        assert list(record) == ["loss", "bce", "mld", "cd", "id"]
        assert teacher.logits.grad_fn is None and teacher.label_embeddings.grad_fn is None  # no_grad teacher
        assert student.label_embeddings.requires_grad and host.device.type == "cpu"
        s, t = student.label_embeddings.detach(), teacher.label_embeddings
        by_hand = {
            "bce": bce_oracle(student.logits.detach(), targets).item(),
            "mld": mld_oracle(student.logits.detach(), teacher.logits).item(),
            "cd": cd_loss_loop(s, t, targets).item(),
            "id": id_loss_loop(s, t, targets).item(),
        }
        for name, value in by_hand.items():
            assert record[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
        total = by_hand["bce"] + 10 * by_hand["mld"] + 100 * by_hand["cd"] + 1000 * by_hand["id"]
        assert record["loss"] == pytest.approx(total, rel=1e-5)
        assert by_hand["cd"] > 0 and by_hand["id"] > 0  # the batch has groups of 3+ positives
    assert calls[0][1].logits.data_ptr() != calls[1][1].logits.data_ptr()
    torch.testing.assert_close(calls[0][1].logits, calls[-1][1].logits)  # the frozen teacher never moves
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["bce"] < history[0]["bce"]


def test_example_runs_as_a_script():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(
        re.fullmatch(rf"step {i}: loss [\d.]+  bce [\d.]+  mld [\d.]+  cd [\d.]+  id [\d.]+", line)
        for i, line in enumerate(lines)
    )


def python_blocks(markdown: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a markdown text."""
    return re.findall(r"^```python[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)


def test_python_blocks_are_found():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = 2\n\nc = 3\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = 2\n\nc = 3\n"]


def test_readme_shows_the_example_verbatim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = python_blocks(readme)
    assert any(EXAMPLE.name in block for block in blocks), "README.md shows no examples/l2d_in_your_loop.py"
    assert EXAMPLE.read_text(encoding="utf-8") in blocks, (
        "README.md's copy of examples/l2d_in_your_loop.py differs from the file: paste the file verbatim"
    )
