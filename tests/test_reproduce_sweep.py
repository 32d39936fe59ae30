"""mlkd sweep + mlkd table end to end: a 2-method x 2-seed grid on digits mosaics with tiny
models, interrupted mid-run, resumed (finished runs not retrained), then tabulated; the table's
mean ± std are recomputed here with numpy from the run folders' metrics.jsonl."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import yaml

import mlkd.engine.trainer as trainer
from mlkd.cli import main as cli_main
from mlkd.errors import ConfigError
from mlkd.reproduce.grid import load_grid
from mlkd.reproduce.sweep import run_status, run_sweep

TINY = {"name": "tiny", "embed_dim": 32, "ffn_dim": 64, "num_heads": 4}


def write_grid(root, cache, **extra):
    grid = {
        "dataset": "digits",
        "out": str(root / "runs"),
        "data": {
            "name": "mosaic",
            "recipe": "none",
            "img_size": 32,
            "batch_size": 32,
            "num_workers": 0,
            "options": {"source": "digits", "num_train": 128, "num_test": 67, "seed": 0, "cache_dir": str(cache)},
        },
        "model": dict(TINY),
        "optim": {"lr": 1e-3, "epochs": 2},
        "train": {"device": "cpu", "progress": "off", "eval_every": 0},
        "pairs": [{"teacher": "tiny", "student": "tiny"}],
        "methods": ["teacher", "vanilla", "mld"],
        "seeds": [0, 1],
        **extra,
    }
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


class EpochCounter:
    """Wraps trainer.train_one_epoch; raises KeyboardInterrupt on call number ``fail_at``."""

    def __init__(self, real, fail_at=None):
        self.real, self.fail_at, self.calls = real, fail_at, 0

    def __call__(self, run):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.real(run)


def last_values(run_dir, protocol="thr@0.5"):
    with open(run_dir / "metrics.jsonl") as handle:
        record = [json.loads(line) for line in handle if line.strip()][-1]
    return {m: 100.0 * record["eval"][protocol][m] for m in ("mAP", "OF1", "CF1")}


def test_sweep_interrupt_resume_skip_and_table(tmp_path, monkeypatch, capsys):
    path = write_grid(tmp_path, tmp_path / "cache")
    grid = load_grid(path)
    # 2 seeds x (teacher, vanilla student, MLD student) = 6 runs, teachers first in each seed.
    assert [(r.role, r.seed) for r in grid.runs] == [
        ("teacher", 0),
        ("student", 0),
        ("distill", 0),
        ("teacher", 1),
        ("student", 1),
        ("distill", 1),
    ]
    assert len(grid.experiments) == 2 * 3 * 1
    real = trainer.train_one_epoch

    # A real interruption: Ctrl-C during the 2nd epoch of the 4th run (seed 1's teacher).
    counter = EpochCounter(real, fail_at=8)
    monkeypatch.setattr(trainer, "train_one_epoch", counter)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid)
    assert [run_status(r) for r in grid.runs] == ["done", "done", "done", "partial", "todo", "todo"]
    finished = {r.run_dir: (r.run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns for r in grid.runs[:3]}

    # Rerun: the 3 finished runs are skipped, the interrupted one resumes at epoch 2.
    counter = EpochCounter(real)
    monkeypatch.setattr(trainer, "train_one_epoch", counter)
    report = run_sweep(load_grid(path))
    assert [report.status[r.run_dir] for r in grid.runs] == ["skipped"] * 3 + ["trained"] * 3
    assert counter.calls == 1 + 2 + 2
    for run_dir, mtime in finished.items():
        assert (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime, f"{run_dir} was retrained"
    with open(grid.runs[3].run_dir / "metrics.jsonl") as handle:
        assert [json.loads(line)["epoch"] for line in handle] == [1, 2]

    # A third sweep trains nothing at all.
    def no_fit(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    assert run_sweep(load_grid(path), fit_fn=no_fit).count("skipped") == 6

    # The table, from the sweep folder and from the grid file: mean ± sample std over the 2 seeds.
    root = grid.out / "digits"
    expected = {}
    for row, folder in (("Teacher", "teacher-tiny"), ("Student", "student-tiny"), ("MLD", "tiny_to_tiny/mld")):
        values = [last_values(root / folder / f"seed{s}") for s in (0, 1)]
        expected[row] = {
            m: (np.mean([v[m] for v in values]), np.std([v[m] for v in values], ddof=1)) for m in ("mAP", "OF1", "CF1")
        }
    capsys.readouterr()
    assert cli_main(["table", str(grid.out), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["method"] for r in rows} == {"Teacher", "Student", "MLD"}
    for r in rows:
        mean, std = expected[r["method"]][r["metric"]]
        assert r["n"] == "2" and r["protocol"] == "thr@0.5" and r["seeds"] == "0;1"
        assert float(r["mean"]) == pytest.approx(mean, abs=1e-4)
        assert float(r["std"]) == pytest.approx(std, abs=1e-4)
    assert cli_main(["table", str(path)]) == 0
    markdown = capsys.readouterr().out
    assert "n = 2 seeds" in markdown and "protocol thr@0.5" in markdown
    for row, metrics in expected.items():
        line = next(li for li in markdown.splitlines() if li.startswith(f"| {row} |"))
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")[1:]]
        assert cells == [f"{metrics[m][0]:.2f} ± {metrics[m][1]:.2f}" for m in ("mAP", "OF1", "CF1")]
    best = max(round(expected[r]["mAP"][0], 2) for r in ("Student", "MLD"))
    for row in ("Student", "MLD"):
        line = next(li for li in markdown.splitlines() if li.startswith(f"| {row} |"))
        assert line.split("|")[2].strip().startswith("**") == (round(expected[row]["mAP"][0], 2) == best)
    assert "| **" not in next(li for li in markdown.splitlines() if li.startswith("| Teacher |"))
    assert cli_main(["table", str(grid.out), "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert r"\pm" in latex and r"\textbf{" in latex and r"\multicolumn{3}{c}{tiny$\rightarrow$tiny}" in latex

    # Run folders made without the sweep (no experiment.json) are placed from their configs:
    # a vanilla run another run was distilled from is the Teacher row.
    for meta in root.rglob("experiment.json"):
        meta.unlink()
    assert cli_main(["table", str(grid.out), "--format", "csv"]) == 0
    plain = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["method"], r["metric"], r["mean"], r["std"]) for r in plain] == [
        (r["method"], r["metric"], r["mean"], r["std"]) for r in rows
    ]
    assert {(r["teacher"], r["student"]) for r in plain} == {("tiny", "tiny")}


def test_finished_run_with_another_config_is_refused(tmp_path):
    path = write_grid(tmp_path, tmp_path / "cache", methods=["vanilla"], seeds=[0])
    run = load_grid(path).runs[0]
    run.run_dir.mkdir(parents=True)
    cfg = run.config.to_dict()
    (run.run_dir / "config.yaml").write_text(yaml.safe_dump({**cfg, "optim": {**cfg["optim"], "lr": 0.5}}))
    (run.run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 2, "eval": {"thr@0.5": {"mAP": 0.5}}}) + "\n")
    with pytest.raises(ConfigError, match="optim.lr"):
        run_status(run)


def test_failed_teacher_blocks_its_students_with_keep_going(tmp_path):
    grid = load_grid(write_grid(tmp_path, tmp_path / "cache", seeds=[0]))
    trained = []

    def fake_fit(cfg, resume=False):
        if cfg.run_dir.endswith("teacher-tiny/seed0"):
            raise RuntimeError("out of memory")
        trained.append(cfg.run_dir)
        return {}

    report = run_sweep(grid, keep_going=True, fit_fn=fake_fit)
    assert [report.status[r.run_dir] for r in grid.runs] == ["failed", "trained", "blocked"]
    assert "out of memory" in report.summary() and trained == [str(grid.runs[1].run_dir)]
    with pytest.raises(RuntimeError, match="out of memory"):
        run_sweep(grid, fit_fn=fake_fit)


def test_shared_teachers_and_weight_variations(tmp_path):
    path = write_grid(
        tmp_path,
        tmp_path / "cache",
        teachers="shared",
        seeds=[3, 4],
        methods=["teacher", "l2d"],
        vary={"method": "l2d", "terms": ["mld"], "factors": [10]},
    )
    grid = load_grid(path, ["models.tiny.embed_dim=48"])
    teachers = [r for r in grid.runs if r.role == "teacher"]
    assert len(teachers) == 1 and teachers[0].seed == 3 and teachers[0].config.model.embed_dim == 48
    variant = next(r for r in grid.runs if r.label == "L2D mld x10 (100)" and r.seed == 4)
    assert variant.config.distill.weights == {"mld": 100.0} and variant.run_dir.parts[-2] == "l2d-mld100"
    assert variant.config.distill.teacher == str(teachers[0].run_dir / "checkpoints" / "last.pt")
    assert grid.run_for(grid.pairs[0], grid.methods[0], 4) is teachers[0]


def test_a_methods_entry_config_applies_to_its_own_runs_only(tmp_path):
    path = write_grid(
        tmp_path,
        tmp_path / "cache",
        distill={"cache": "auto"},
        seeds=[0],
        methods=[
            "teacher",
            "vanilla",
            "mld",
            {"method": "reviewkd", "config": {"distill": {"cache": "off"}, "optim": {"lr": 0.5}}},
        ],
    )
    grid = load_grid(path)
    by_method = {r.method: r.config for r in grid.runs if r.role != "teacher"}
    assert by_method["reviewkd"].distill.cache == "off" and by_method["reviewkd"].optim.lr == 0.5
    assert by_method["reviewkd"].distill.method == "reviewkd"
    assert by_method["mld"].distill.cache == "auto" and by_method["mld"].optim.lr == 1e-3
    assert by_method["vanilla"].distill.cache == "auto"
    teacher = next(r for r in grid.runs if r.role == "teacher")
    assert teacher.config.optim.lr == 1e-3


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"methods": ["l3d"]}, "unknown method 'l3d'"),
        ({"methods": [{"method": "mld", "config": {"pairs": []}}]}, "must hold config sections"),
        ({"methods": [{"method": "teacher", "config": {"optim": {"lr": 1}}}]}, "takes no weights, options or config"),
        ({"pairs": [{"teacher": "tiny"}]}, "bad pair"),
        ({"seeds": [0, 0]}, "repeats a seed"),
        ({"run_dir": "x"}, "run_dir is set per run"),
        ({"methods": [{"method": "l2d", "weights": {"cdd": 1}}]}, "unknown loss term"),
        ({"model": {"embed_dim": -1}}, "embed_dim"),
    ],
)
def test_bad_grids_are_one_line_config_errors(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        load_grid(write_grid(tmp_path, tmp_path / "cache", **bad))
