"""Term diagnostics: gradient norms against hand-computed gradients and plain autograd, the
geometry against a loop, the warning, and training unchanged by the measurement."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from engine_helpers import tiny_config
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.diagnostics import TermDiagnostics, embedding_geometry, term_gradient_norms
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from mlkd.losses import build_objective, cd_loss, id_loss
from mlkd.models.output import ModelOutput


def _outputs(B=6, q=5, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, q, generator=g, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(B, q, D, generator=g, dtype=torch.float64, requires_grad=True)
    pooled = torch.randn(B, 3, generator=g, dtype=torch.float64)
    student = ModelOutput(logits=logits, label_embeddings=emb, pooled=pooled)
    teacher = ModelOutput(
        logits=torch.randn(B, q, generator=g, dtype=torch.float64),
        label_embeddings=torch.randn(B, q, 7, generator=g, dtype=torch.float64),
        pooled=pooled,
    )
    targets = (torch.rand(B, q, generator=g) < 0.6).double()
    targets[0, :4] = 1  # at least one image with 4 labels and one class with several images
    targets[:4, 0] = 1
    return student, teacher, targets


def test_gradient_norms_equal_the_hand_computed_gradients():
    student, teacher, targets = _outputs()
    objective = build_objective("mse", weights={"mse": 3.0}).double()
    values = objective.term_values(student, teacher, targets)
    norms = term_gradient_norms(objective, values, student)
    z, t = student.logits.detach(), teacher.logits
    bce_grad = torch.sigmoid(z) - targets  # d(sum BCE)/dz
    mse_grad = 3.0 * 2 * (z - t) / z.numel()  # d(3 * mean (z - t)^2)/dz
    assert norms["bce"].item() == pytest.approx(bce_grad.norm().item(), rel=1e-6)
    assert norms["mse"].item() == pytest.approx(mse_grad.norm().item(), rel=1e-6)


def test_embedding_gradient_norms_equal_plain_autograd():
    student, teacher, targets = _outputs()
    objective = build_objective("l2d").double()
    values = objective.term_values(student, teacher, targets)
    norms = term_gradient_norms(objective, values, student)
    for name, loss, weight in (("cd", cd_loss, 100.0), ("id", id_loss, 1000.0)):
        emb = student.label_embeddings.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(weight * loss(emb, teacher.label_embeddings, targets), emb)
        assert norms[name].item() == pytest.approx(grad.norm().item(), rel=1e-5)
    assert values["cd"].grad_fn is not None  # the training graph is kept for the backward


def test_geometry_equals_a_loop_over_classes_and_images():
    student, _, targets = _outputs(B=7, q=6, D=5, seed=3)
    emb = student.label_embeddings.detach()
    cd, id_ = embedding_geometry(emb, targets)
    positives = [(i, k) for i in range(7) for k in range(6) if targets[i, k] > 0.5]
    norm = sum(emb[i, k].norm() for i, k in positives) / len(positives)
    by_class = [
        (emb[i, k] - emb[j, k]).norm()
        for k in range(6)
        for i, j in itertools.combinations([i for i in range(7) if targets[i, k] > 0.5], 2)
    ]
    by_image = [
        (emb[i, k] - emb[i, m]).norm()
        for i in range(7)
        for k, m in itertools.combinations([k for k in range(6) if targets[i, k] > 0.5], 2)
    ]
    assert cd.item() == pytest.approx((sum(by_class) / len(by_class) / norm).item(), rel=1e-5)
    assert id_.item() == pytest.approx((sum(by_image) / len(by_image) / norm).item(), rel=1e-5)


def _summary_of(weights, seed=0):
    student, teacher, targets = _outputs(seed=seed)
    objective = build_objective("mse", weights=weights).double()
    diagnostics = TermDiagnostics(1, 10.0, objective.weights)
    for _ in range(3):
        values = objective.term_values(student, teacher, targets)
        diagnostics.measure(objective, values, student, teacher, targets)
    return diagnostics, diagnostics.summary()


def test_warning_names_a_dominant_term_and_stays_silent_otherwise(caplog):
    student, _, targets = _outputs()
    bce = (torch.sigmoid(student.logits.detach()) - targets).norm()
    # the MSE gradient is w * 2 * ||z - t|| / (B q): weights giving 100x and 0.1x BCE's
    _, probe = _summary_of({"mse": 1.0})
    unit = probe["terms"]["mse"]["grad"] / bce.item()
    with caplog.at_level(logging.WARNING, logger="mlkd"):
        diagnostics, summary = _summary_of({"mse": 100.0 / unit})
        assert summary["terms"]["mse"]["ratio"] == pytest.approx(100.0, rel=1e-6)
        assert diagnostics.warn(summary, epoch=1) == ["mse"]
    assert "mse" in caplog.text and "100x BCE" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mlkd"):
        diagnostics, summary = _summary_of({"mse": 0.1 / unit})
        assert summary["terms"]["mse"]["ratio"] == pytest.approx(0.1, rel=1e-6)
        assert diagnostics.warn(summary, epoch=1) == []
    assert caplog.text == ""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    fit(tiny_config(root / "teacher", root / "cache", epochs=1))
    return root


def _train(root, name, every, method="l2d", epochs=2):
    cfg = tiny_config(
        root / name,
        root / "cache",
        method=method,
        epochs=epochs,
        teacher=str(root / "teacher" / "checkpoints" / "last.pt"),
        train={"diagnostics_every": every, "seed": 0, "device": "cpu", "progress": "off"},
    )
    fit(cfg)
    return read_jsonl(root / name / "metrics.jsonl"), load_checkpoint(root / name / "checkpoints" / "last.pt")


def test_metrics_carry_diagnostics_and_the_measurement_changes_no_number(teacher, caplog):
    with caplog.at_level(logging.WARNING, logger="mlkd"):
        measured, ckpt_on = _train(teacher, "on", every=1)
    plain, ckpt_off = _train(teacher, "off", every=0)
    steps = 4  # 128 training images, batch 32
    for record in measured:
        diag = record["diagnostics"]
        assert diag["steps"] == steps
        assert set(diag["terms"]) == {"bce", "mld", "cd", "id"}
        assert diag["terms"]["bce"]["ratio"] == pytest.approx(1.0)
        assert diag["terms"]["id"]["weight"] == 1000.0
        assert all(diag["terms"][t]["grad"] > 0 for t in diag["terms"])
        assert set(diag["geometry"]) == {"student_cd", "student_id", "teacher_cd", "teacher_id"}
    # the recorded CD mean is the mean of the per-step values the loss logged
    assert measured[0]["diagnostics"]["terms"]["cd"]["value"] == pytest.approx(measured[0]["train"]["cd"], rel=1e-5)
    assert all("diagnostics" not in record for record in plain)
    timing = {"seconds", "images_per_s"}
    for a, b in zip(measured, plain):
        assert {k: v for k, v in a["train"].items() if k not in timing} == {
            k: v for k, v in b["train"].items() if k not in timing
        }
        assert a["eval"] == b["eval"]
    for key, value in ckpt_on["model"].items():
        assert torch.equal(value, ckpt_off["model"][key]), key
    dominant = [name for name, e in measured[-1]["diagnostics"]["terms"].items() if name != "bce" and e["ratio"] > 10]
    for name in dominant:
        assert f"{name} (weight" in caplog.text
    if not dominant:
        assert "outweigh BCE" not in caplog.text


def test_diagnostics_every_n_steps_measures_those_steps(teacher):
    records, _ = _train(teacher, "every3", every=3, method="mld")
    # global steps 0..7 over two epochs of 4: measured at 0, 3 (epoch 1) and 6 (epoch 2)
    assert [r["diagnostics"]["steps"] for r in records] == [2, 1]
    assert "geometry" in records[0]["diagnostics"]
    assert set(records[0]["diagnostics"]["terms"]) == {"bce", "mld"}


def test_table_diagnostics_of_a_swept_grid(tmp_path, capsys):
    import json

    import yaml

    from mlkd.cli import main as cli_main

    grid = {
        "dataset": "digits",
        "out": str(tmp_path / "runs"),
        "data": {
            "name": "mosaic",
            "recipe": "none",
            "img_size": 32,
            "batch_size": 32,
            "num_workers": 0,
            "options": {
                "source": "digits",
                "num_train": 128,
                "num_test": 67,
                "seed": 0,
                "cache_dir": str(tmp_path / "cache"),
            },
        },
        "model": {"name": "tiny", "embed_dim": 32, "ffn_dim": 64, "num_heads": 4},
        "optim": {"lr": 1e-3, "epochs": 2},
        "train": {"device": "cpu", "progress": "off", "diagnostics_every": 2},
        "pairs": [{"teacher": "tiny", "student": "tiny"}],
        "methods": ["teacher", "vanilla", "l2d"],
        "seeds": [0, 1],
        "teachers": "shared",
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert cli_main(["sweep", str(path)]) == 0
    capsys.readouterr()
    assert cli_main(["table", str(path), "--diagnostics"]) == 0
    text = capsys.readouterr().out.split("Term diagnostics of")[1]
    row = next(line for line in text.splitlines() if line.startswith("| L2D |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["2", "1 → 2"]
    # the id ratio's last-epoch mean over the two seeds, recomputed from the run folders
    lasts = []
    for seed in (0, 1):
        folder = tmp_path / "runs" / "digits" / "tiny_to_tiny" / "l2d" / f"seed{seed}"
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        lasts.append(records[-1]["diagnostics"]["terms"]["id"]["ratio"])
    header = [
        c.strip() for c in next(line for line in text.splitlines() if line.startswith("| row")).strip("|").split("|")
    ]
    id_cell = cells[header.index("id / BCE (first → last)")]
    assert id_cell.split(" → ")[1] == f"{sum(lasts) / 2:.3g}"
