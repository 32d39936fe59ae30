"""``mlkd demo`` end to end at toy sizes: the runs, the report's numbers, reuse on a rerun."""

from __future__ import annotations

import json

import pytest

import mlkd.demo as demo
from mlkd.cli import main as cli_main
from mlkd.config import load_config
from mlkd.engine import trainer


@pytest.fixture
def toy_demo(monkeypatch, tmp_path):
    monkeypatch.setitem(demo.SOURCES, "digits", {"img_size": 32, "num_train": 96, "num_test": 40, "epochs": 1})
    tiny = {"name": "tiny", "embed_dim": 32, "ffn_dim": 64}
    monkeypatch.setattr(demo, "TEACHER_MODEL", tiny)
    monkeypatch.setattr(demo, "STUDENT_MODEL", tiny)
    monkeypatch.setenv("MLKD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "demo"


def test_demo_trains_reports_and_reuses_its_runs(toy_demo, monkeypatch, capsys):
    assert cli_main(["demo", "--source", "digits", "--out", str(toy_demo), "--device", "cpu"]) == 0
    report = (toy_demo / "report.md").read_text()
    assert (toy_demo / "chart.png").stat().st_size > 0
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ") and "---" not in line}
    assert list(rows)[1:] == ["Teacher", "Student", "MLD", "L2D (paper λ)", "L2D (validated λ)"]
    for name, folder in (("Teacher", "teacher"), ("Student", "vanilla"), ("L2D (validated λ)", "l2d-validated")):
        record = json.loads((toy_demo / f"digits-{folder}" / "metrics.jsonl").read_text().splitlines()[-1])
        m = record["eval"]["thr@0.5"]
        cells = [c.strip().strip("*") for c in rows[name].split("|")[2:5]]
        assert cells == [f"{100 * m[k]:.2f}" for k in ("mAP", "OF1", "CF1")], name
    weights = load_config(toy_demo / "digits-l2d-validated" / "config.yaml").distill.weights
    assert weights == {"cd": 1.0, "id": 10.0}
    assert load_config(toy_demo / "digits-l2d" / "config.yaml").distill.weights == {}
    # A second demo retrains nothing: every run is finished and reused.
    calls = []
    monkeypatch.setattr(trainer, "train_one_epoch", lambda run: calls.append(run) or {})
    assert cli_main(["demo", "--source", "digits", "--out", str(toy_demo), "--device", "cpu"]) == 0
    assert calls == [] and (toy_demo / "report.md").read_text() == report


def test_demo_refuses_unknown_methods_before_training(toy_demo, capsys):
    assert cli_main(["demo", "--source", "digits", "--out", str(toy_demo), "--methods", "vanilla,l2dd"]) == 2
    assert "unknown method(s) l2dd" in capsys.readouterr().err and not toy_demo.exists()
