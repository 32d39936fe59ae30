"""The mlkd command's shape: --version, global flags, --print-config / --dry-run, checks before any
data or folder, the grid refusal, configs/examples/, and distill.* overrides of a sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlkd import __version__
from mlkd.cli import main
from mlkd.config import load_config
from mlkd.engine.checks import check_config
from mlkd.errors import ConfigError
from mlkd.reproduce.grid import load_grid

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "configs" / "examples").glob("*.yaml"))


def run(argv, capsys):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"mlkd {__version__}\n"


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom mlkd.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.stderr.strip() == "False" and "sweep" in result.stdout


def test_the_method_help_lists_the_registered_methods(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "objective name: vanilla, rkd, pkt, reviewkd, mse, ps, mld, mld+cd, mld+id, l2d, l2d-bounded (default" in text
    )


def test_global_flags_after_the_subcommand(tmp_path, capsys):
    argv = ["distill", "--method", "l2d", "--teacher", "t.pt", f"run_dir={tmp_path / 'r'}", "--dry-run"]
    code, out, _ = run([*argv, "--quiet", "--plugin", "json"], capsys)
    assert code == 0 and "method:     l2d: bce 1, mld 10, cd 100, id 1000" in out
    from mlkd.cli import parse_command_line

    args = parse_command_line(["--plugin", "json", "train", "--quiet", "--plugin", "csv", "--debug"])
    assert (args.quiet, args.debug, args.plugin) == (True, True, ["json", "csv"])
    args = parse_command_line(["-q", "train"])
    assert (args.quiet, args.debug, args.plugin) == (True, False, [])
    assert not (tmp_path / "r").exists()


def test_print_config_is_the_resolved_config(tmp_path, capsys):
    code, out, _ = run(
        ["train", "-c", ROOT / "configs/examples/coco_scenes_teacher.yaml", "optim.epochs=3", "--print-config"], capsys
    )
    printed = yaml.safe_load(out)
    expected = load_config(ROOT / "configs/examples/coco_scenes_teacher.yaml", ["optim.epochs=3"]).to_dict()
    assert code == 0 and printed == expected and printed["optim"]["epochs"] == 3
    assert printed["model"]["ffn_dim"] == 256 and printed["data"]["recipe"] == "official"  # file + default


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["distill", "--method", "foo"], "distill.method: unknown method 'foo'; choose one of: vanilla,"),
        (["distill", "--method", "L2D"], "distill.method: unknown method 'L2D' (did you mean 'l2d'?)"),
        (["train", "data.name=imagenet"], "data.name: unknown dataset 'imagenet'"),
        (["train", "model.head=mlp"], "'model.head': Value error, unknown model head 'mlp'"),
        (["train", "data.recipe=fancy"], "'data.recipe': Value error, unknown transform recipe 'fancy'"),
        (["train", "distill.weights.kd=1"], "distill.weights: unknown loss term(s) ['kd']"),
        (
            ["distill", "--method", "mld", "--teacher", "t.pt", "distill.options.mld.temperature=-1"],
            "distill.options.mld.temperature: loss term 'mld': option 'temperature' must be > 0, got -1",
        ),
        (["distill", "--method", "mld"], "distill.teacher: method 'mld' distils from a teacher"),
        (
            ["distill", "--method", "l2d", "--teacher", "t.pt", "model.head=linear"],
            "model.head: the cd, id term(s) of method 'l2d' read label embeddings",
        ),
    ],
)
@pytest.mark.parametrize("mode", ["run", "--dry-run"])
def test_refused_before_any_data_or_folder(tmp_path, capsys, monkeypatch, argv, needle, mode):
    from mlkd.data import loaders

    built = []
    monkeypatch.setattr(loaders, "build_dataset", lambda *a, **k: built.append(a))
    monkeypatch.chdir(tmp_path)
    code, out, err = run([*argv, "run_dir=runs/x", *([mode] if mode != "run" else [])], capsys)
    assert code == 2 and err.startswith("mlkd: error: ") and needle in err, err
    assert built == [] and not (tmp_path / "runs").exists() and out == ""


def test_a_grid_given_to_train_points_to_sweep(capsys):
    grid = ROOT / "configs" / "scenes_validation.yaml"
    code, _, err = run(["train", "-c", grid], capsys)
    assert code == 2 and err.strip() == (
        f"mlkd: error: {grid} is an experiment grid (it has include, dataset, out, methods), not the config of "
        f"one run: run it with `mlkd sweep {grid}` (`mlkd sweep {grid} --dry-run` lists its runs), or start "
        "one run from configs/examples/"
    )


# ----------------------------------------------------------------- configs/examples


def test_examples_cover_both_datasets_and_every_command():
    assert sorted(p.name for p in EXAMPLES) == sorted(
        f"{d}_{kind}.yaml" for d in ("coco2014", "coco_scenes") for kind in ("teacher", "l2d", "eval")
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_loads_and_validates(path, capsys):
    cfg = load_config(path)
    check_config(cfg) if not path.stem.endswith("_eval") else None
    assert cfg.data.name == path.stem.rsplit("_", 1)[0]
    kind = path.stem.rsplit("_", 1)[1]
    if kind == "eval":
        assert set(yaml.safe_load(path.read_text())) == {"data"}
        return
    assert cfg.distill.method == {"teacher": "vanilla", "l2d": "l2d"}[kind]
    command = {"teacher": "train", "l2d": "distill"}[kind]
    code, out, _ = run([command, "-c", path, "--dry-run"], capsys)
    assert code == 0 and f"run folder: {cfg.run_dir}" in out
    if kind == "l2d":  # the teacher it names is the teacher example's run folder
        teacher = load_config(path.with_name(path.name.replace("_l2d", "_teacher")))
        assert cfg.distill.teacher == teacher.run_dir


def test_coco_scenes_examples_train_distil_and_evaluate(tmp_path, capsys):
    small = [
        f"data.options={{num_train: 24, num_test: 16, seed: 0, cache_dir: {tmp_path / 'cache'}}}",
        "data.img_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.name=tiny",
        "model.pretrained=false",
        "model.embed_dim=16",
        "model.num_heads=2",
        "model.ffn_dim=32",
        "optim.epochs=1",
        "train.device=cpu",
        "train.progress=off",
    ]
    teacher, student = tmp_path / "teacher", tmp_path / "l2d"
    examples = ROOT / "configs" / "examples"
    code, out, err = run(["train", "-c", examples / "coco_scenes_teacher.yaml", *small, f"run_dir={teacher}"], capsys)
    assert code == 0, err
    code, out, err = run(
        ["distill", "-c", examples / "coco_scenes_l2d.yaml", *small, f"run_dir={student}", "--teacher", teacher], capsys
    )
    assert code == 0, err
    record = json.loads((student / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["train"]) >= {"bce", "mld", "cd", "id"}
    assert all(record["train"][k] == record["train"][k] for k in ("bce", "mld", "cd", "id"))  # not NaN
    code, out, err = run(
        [
            "eval",
            "-c",
            examples / "coco_scenes_eval.yaml",
            student,
            small[0],
            "data.img_size=32",
            "-o",
            tmp_path / "m.json",
            "--compact",
        ],
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == json.loads(out) and metrics["num_images"] == 16
    assert 0.0 <= metrics["thr@0.5"]["mAP"] <= 1.0


# ----------------------------------------------------------------- sweep: distill.* overrides


def plan(grid: str, *overrides: str):
    return load_grid(ROOT / "configs" / grid, list(overrides))


def test_distill_overrides_reach_the_distillation_rows_only():
    grid = plan(
        "scenes_validation.yaml",
        "methods=[teacher,vanilla,l2d]",
        "distill.weights.cd=1",
        "distill.weights.id=10",
        "distill.cache=off",
    )
    by_role = {}
    for run_spec in grid.runs:
        by_role.setdefault(run_spec.role, []).append(run_spec)
    base = plan("scenes_validation.yaml", "methods=[teacher,vanilla,l2d]")
    untouched = {r.run_dir: r.config.to_dict() for r in base.runs if r.role != "distill"}
    for role in ("teacher", "student"):
        for run_spec in by_role[role]:  # identical to the grid without the overrides
            assert run_spec.config.to_dict() == untouched[run_spec.run_dir]
            assert run_spec.config.distill.weights == {} and run_spec.config.distill.cache == "auto"
    assert len(by_role["distill"]) == 3
    for run_spec in by_role["distill"]:
        d = run_spec.config.distill
        assert (d.method, d.weights, d.cache) == ("l2d", {"cd": 1.0, "id": 10.0}, "off")
        assert run_spec.label == "L2D (cd=1, id=10)" and run_spec.run_dir.parts[-2] == "l2d-cd1-id10"


def test_a_term_weight_reaches_only_the_methods_having_it():
    grid = plan("scenes_validation.yaml", "methods=[teacher,vanilla,mld,rkd,l2d]", "distill.weights.mld=1")
    weights = {r.method: r.config.distill.weights for r in grid.runs if r.role == "distill" and r.seed == 0}
    assert weights == {"mld": {"mld": 1.0}, "rkd": {}, "l2d": {"mld": 1.0}}


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (
            ["methods=[teacher,vanilla,rkd]", "distill.weights.cd=1"],
            "override 'distill.weights.cd' reaches no run: no distillation row of this grid has a 'cd' term "
            "(rows: RKD (bce, rkd)); set it per row in the grid: methods=[..., {method: l2d, weights: {cd: 1}",
        ),
        (["methods=[teacher,vanilla]", "distill.cache=off"], "override 'distill.cache=off' reaches no run"),
        (["methods=[teacher,vanilla,l2d]", "distill.method=mld"], "override 'distill.method=mld': the grid sets"),
        (["methods=[teacher,vanilla,l2d]", "distill.teacher=/t.pt"], "override 'distill.teacher=/t.pt': the grid"),
        (
            ["methods=[teacher,{method: l2d, weights: {cd: 1}}]", "distill.weights.cd=5"],
            "override distill.*.cd contradicts the row 'L2D (cd=1)', which sets 'cd' itself",
        ),
    ],
)
def test_distill_overrides_that_reach_no_row_are_errors(overrides, needle):
    with pytest.raises(ConfigError) as info:
        plan("scenes_validation.yaml", *overrides)
    assert needle in str(info.value)


def test_sweep_dry_run_with_scoped_overrides(capsys):
    code, out, err = run(
        [
            "sweep",
            ROOT / "configs" / "scenes_validation.yaml",
            "methods=[teacher,vanilla,l2d]",
            "distill.weights.cd=1",
            "distill.weights.id=10",
            "--dry-run",
            "-o",
            "/nonexistent/runs",
        ],
        capsys,
    )
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [(r[2], " ".join(r[3:-5])) for r in rows[:3]] == [
        ("teacher", "Teacher"),
        ("student", "Student"),
        ("distill", "L2D (cd=1, id=10)"),
    ]
    assert rows[2][-2].startswith("/nonexistent/runs/") and rows[2][-2].endswith("/l2d-cd1-id10/seed0")


def test_a_grid_checks_each_run_before_any_folder(tmp_path, capsys):
    code, _, err = run(
        ["sweep", ROOT / "configs" / "scenes_validation.yaml", "data.name=cocoo", "-o", tmp_path / "o"], capsys
    )
    assert code == 2 and "data.name: unknown dataset 'cocoo'" in err and not (tmp_path / "o").exists()
