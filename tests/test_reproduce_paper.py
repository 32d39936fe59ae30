"""The paper's grids in configs/ (expand, validate, dry run), its published tables as data
(headline numbers, the Table 3 erratum) and the table renderers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlkd.analysis.render import render
from mlkd.analysis.results import Cell, Column, ResultTable
from mlkd.cli import main as cli_main
from mlkd.errors import ConfigError
from mlkd.models.names import resolve_model_name
from mlkd.models.official_weights import OFFICIAL_WEIGHTS
from mlkd.reproduce.grid import load_grid, read_grid_file
from mlkd.reproduce.paper import attach_paper, paper_data, paper_table, paper_table_ids
from mlkd.reproduce.sweep import run_sweep

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PAPER_GRIDS = {  # grid file -> (paper table, pairs, methods, runs)
    "coco_table1.yaml": ("table1", 4, 9, 36),
    "coco_table2.yaml": ("table2", 4, 9, 33),  # the vanilla MobileNetV2 and R101/Swin-T teachers serve 2 pairs
    "coco_table4_ablation.yaml": ("table4", 1, 6, 6),
    "nuswide_table5.yaml": ("table5", 2, 9, 18),
    "coco_table6_reversed.yaml": ("table6", 1, 9, 9),
    "voc_table7.yaml": ("table7", 4, 9, 36),
    "voc_table8.yaml": ("table8", 4, 9, 33),
    "coco_sensitivity.yaml": (None, 1, 9, 9),
}
ROWS = ["Teacher", "Student", "RKD", "PKT", "ReviewKD", "MSE", "PS", "MLD", "L2D"]


def grid_files():
    return sorted(p.name for p in CONFIGS.glob("*.yaml") if "pairs" in read_grid_file(p))


def test_every_paper_experiment_has_a_grid():
    assert set(PAPER_GRIDS) | {"demo_table1.yaml"} <= set(grid_files())


@pytest.mark.parametrize("name", grid_files())
def test_grid_expands_into_valid_run_configs(name):
    grid = load_grid(CONFIGS / name, ["data.options.root=/data/x"])
    assert not grid.missing and grid.runs
    assert len({r.run_dir for r in grid.runs}) == len(grid.runs)
    for run in grid.runs:  # each is a validated Config; teachers precede their students
        assert run.config.train.seed == run.seed and run.config.model.name.split(".")[0] in (
            run.model,
            resolve_model_name(run.model),
        )  # the official recipe may add a timm weights tag
        if run.teacher_run is not None:
            assert run.teacher_run in [r.run_dir for r in grid.runs[: grid.runs.index(run)]]
            assert run.config.distill.teacher == str(run.teacher_run / "checkpoints" / "last.pt")
    for run in grid.cells.values():
        assert run in grid.runs
    assert len(grid.cells) == len(grid.experiments)
    if name not in PAPER_GRIDS:
        return
    paper, n_pairs, n_methods, n_runs = PAPER_GRIDS[name]
    assert (len(grid.pairs), len(grid.methods), len(grid.runs)) == (n_pairs, n_methods, n_runs)
    assert grid.paper == paper and grid.missing == []
    for run in grid.runs:  # the official recipe
        cfg = run.config
        assert (cfg.data.img_size, cfg.data.recipe, cfg.data.batch_size, cfg.data.normalize) == (
            224,
            "official",
            64,
            False,
        )
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.pct_start, cfg.optim.epochs) == (
            "adam",
            1e-4,
            1e-4,
            0.2,
            80,
        )
        assert cfg.model.pretrained is True and cfg.model.embed_dim == 768 and "oracle-k" in cfg.train.protocols
        assert "oracle-k-strict" in cfg.train.protocols and cfg.train.amp == "official"
        official = OFFICIAL_WEIGHTS[run.model].timm_tag
        assert cfg.model.name == (official or run.model)  # the official code's ImageNet weights
        assert cfg.optim.stop_epoch == (30 if run.role == "teacher" else None)
    if paper:  # the grid's pairs are the published table's
        published = [
            (resolve_model_name(p["teacher"]), resolve_model_name(p["student"])) for p in paper_data(paper)["pairs"]
        ]
        assert [(resolve_model_name(p.teacher), resolve_model_name(p.student)) for p in grid.pairs] == published


def test_paper_grids_need_a_data_root(tmp_path):
    grid = load_grid(CONFIGS / "coco_table1.yaml", out=tmp_path)
    assert grid.missing == ["data.options.root"]
    with pytest.raises(ConfigError, match="data.options.root=/path"):
        run_sweep(grid)


def test_dry_run_lists_every_run(capsys, tmp_path):
    for name in PAPER_GRIDS:
        assert cli_main(["sweep", str(CONFIGS / name), "--dry-run", "--out", str(tmp_path)]) == 0
        text = capsys.readouterr().out
        grid = load_grid(CONFIGS / name, out=tmp_path)
        assert f"= {len(grid.experiments)} experiments -> {len(grid.runs)} runs" in text
        for run in grid.runs:
            assert str(run.run_dir) in text
        assert "todo" in text and not tmp_path.joinpath(grid.dataset).exists()  # nothing trained or created
    assert cli_main(["sweep", str(CONFIGS / "demo_table1.yaml"), "seeds=[0]", "--dry-run"]) == 0
    assert "1 pair(s) x 10 method(s) x 1 seed(s) = 10 experiments -> 10 runs" in capsys.readouterr().out
    # Overrides may also follow the options; an unknown option is still refused.
    assert cli_main(["sweep", str(CONFIGS / "demo_table1.yaml"), "--dry-run", "seeds=[0,1]"]) == 0
    assert "x 2 seed(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["sweep", str(CONFIGS / "demo_table1.yaml"), "--dry-run", "seeds=[0]", "--bogus"])
    assert "unrecognized arguments: --bogus\n" in capsys.readouterr().err


def test_shared_runs_across_coco_grids():
    one = load_grid(CONFIGS / "coco_table1.yaml", ["data.options.root=/d"])
    two = load_grid(CONFIGS / "coco_table2.yaml", ["data.options.root=/d"])
    shared = {r.run_dir: r for r in one.runs}.keys() & {r.run_dir for r in two.runs}
    # The R101 teacher, the vanilla RepVGG-A0 and ResNet-34 students are trained once for both tables.
    names = sorted(str(p.relative_to(one.out)) for p in shared)
    assert names == ["coco/student-repvgg_a0/seed0", "coco/student-resnet34/seed0", "coco/teacher-resnet101/seed0"]
    for run_dir in shared:
        a = next(r for r in one.runs if r.run_dir == run_dir).config.to_dict()
        b = next(r for r in two.runs if r.run_dir == run_dir).config.to_dict()
        assert a == b


def test_paper_headline_numbers():
    """The paper's headline numbers, read back from the transcribed tables."""
    assert paper_table_ids() == [f"table{i}" for i in range(1, 9)]
    t1 = paper_table("table1")
    r34 = [c.label for c in t1.columns].index("resnet101->resnet34")
    mAP = {row: t1.cell(row, r34, "mAP").mean for row in t1.rows}
    assert (mAP["Teacher"], mAP["Student"], mAP["L2D"]) == (73.62, 70.31, 72.87)
    baselines = {row: mAP[row] for row in ("RKD", "PKT", "ReviewKD", "MSE", "PS")}
    assert max(baselines, key=baselines.get) == "PS" and baselines["PS"] == 70.86
    wrn = [c.label for c in t1.columns].index("wrn101->wrn50")
    assert t1.cell("L2D", wrn, "mAP").mean == 76.61 > t1.cell("Teacher", wrn, "mAP").mean == 74.70
    t6 = paper_table("table6")
    assert (t6.cell("L2D", 0, "mAP").mean, t6.cell("Student", 0, "mAP").mean) == (75.51, 73.98)
    t4 = paper_table("table4")
    assert [t4.cell(r, 0, "mAP").mean for r in t4.rows] == [70.31, 70.68, 71.91, 71.79, 72.87]
    for table_id in ("table1", "table2", "table5", "table6", "table7", "table8"):
        data = paper_data(table_id)
        for pair in data["pairs"]:
            assert list(pair["rows"]) == ROWS
            assert all(len(v) == 3 and all(20 < x < 100 for x in v) for v in pair["rows"].values())
            # L2D has the best mAP among the students of every published pair
            students = {r: v[0] for r, v in pair["rows"].items() if r != "Teacher"}
            assert max(students, key=students.get) == "L2D"


def test_table3_erratum_printed_map_is_not_the_mean_of_its_rows():
    data = paper_data("table3")
    assert len(data["classes"]) == 20 and len(set(data["classes"])) == 20
    from mlkd.data.voc import VOC_CLASSES

    assert sorted(data["classes"]) == sorted(VOC_CLASSES)
    for row, entry in data["rows"].items():
        assert len(entry["ap"]) == 20
        mean = float(np.mean(entry["ap"]))
        # Each row's per-class mean exceeds its printed mAP by 0.5-1.1 points: not a rounding issue.
        assert 0.5 < mean - entry["printed_mAP"] < 1.1, row
    # The printed mAP of the vanilla, MSE, MLD and L2D rows equal table7's R50 -> R18 column.
    t7 = paper_data("table7")["pairs"][1]
    assert (t7["teacher"], t7["student"]) == ("resnet50", "resnet18")
    for row, entry in data["rows"].items():
        if row in ("Student", "MSE", "MLD", "L2D"):
            assert entry["printed_mAP"] == t7["rows"][row][0]


def synthetic_table(protocol="thr@0.5"):
    table = ResultTable("demo", protocol, [Column("coco", "resnet101", "resnet34")], ["Teacher", "Student", "L2D"])
    values = {"Teacher": [90.0, 91.0, 92.0], "Student": [70.0, 71.0, 72.0], "L2D": [72.0, 73.0, 75.0]}
    for row, per_metric in values.items():
        for metric, v in zip(("mAP", "OF1", "CF1"), per_metric):
            table.cells[(row, 0, metric)] = Cell([v - 1, v + 1], [0, 1])
    table.cells[("Student", 0, "CF1")] = Cell([75.0, 76.0, 77.0], [0, 1, 2])
    return table


def test_renderers_bold_the_best_student_and_note_n():
    table = synthetic_table()
    md = render(table, "md")
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["Teacher"] == "| Teacher | 90.00 ± 1.41 | 91.00 ± 1.41 | 92.00 ± 1.41 |"  # never bold
    assert lines["L2D"] == "| L2D | **72.00 ± 1.41** | **73.00 ± 1.41** | 75.00 ± 1.41 |"
    assert lines["Student"].endswith("| **76.00 ± 1.00 (n=3)** |")
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert len(rows) == 9 and {r["protocol"] for r in rows} == {"thr@0.5"}
    cf1 = next(r for r in rows if r["method"] == "Student" and r["metric"] == "CF1")
    assert (cf1["mean"], cf1["std"], cf1["n"], cf1["values"], cf1["best"]) == (
        "76.0000",
        "1.0000",
        "3",
        "75.0000;76.0000;77.0000",
        "1",
    )
    latex = render(table, "latex")
    assert r"\textbf{72.00 $\pm$ 1.41}" in latex and r"resnet101$\rightarrow$resnet34" in latex
    table.rows[-1] = "L2D (validated λ)"  # unicode Greek in a row label becomes math (pdflatex)
    table.cells = {("L2D (validated λ)" if k[0] == "L2D" else k[0], *k[1:]): v for k, v in table.cells.items()}
    assert "L2D (validated $\\lambda$) & " in render(table, "latex")
    with pytest.raises(ConfigError, match="format"):
        render(table, "html")


def test_paper_numbers_beside_ours():
    table = synthetic_table()
    assert attach_paper(table, "table1") is None  # the column matched table1's R101 -> R34
    md = render(table, "md")
    assert "| mAP | mAP (paper) | OF1 | OF1 (paper) |" in md
    assert "| Student | 70.00 ± 1.41 | 70.31 |" in md
    assert "| PS | – | 70.86 |" in md  # published rows we did not run are listed
    assert "pass --protocol oracle-k" in md
    other = ResultTable("x", "oracle-k", [Column("m", "resnet10t", "tiny")], ["Student"])
    standalone = attach_paper(other, "table1")
    assert standalone is not None and standalone.published and len(standalone.columns) == 4


def test_cli_prints_a_published_table(capsys):
    assert cli_main(["table", "--paper", "table4", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["method"], r["mean"]) for r in rows] == [
        ("Student", "70.3100"),
        ("MLD", "70.6800"),
        ("MLD+CD", "71.9100"),
        ("MLD+ID", "71.7900"),
        ("L2D", "72.8700"),
    ]
    assert cli_main(["table", "--paper", "table3"]) == 0
    text = capsys.readouterr().out
    assert "mAP (printed)" in text and "mean of APs" in text and "erratum" in text
    assert cli_main(["table", "--paper", "table9"]) == 2


def test_yaml_of_the_paper_tables_is_plain_data():
    path = Path(__file__).resolve().parent.parent / "src" / "mlkd" / "reproduce" / "paper_tables.yaml"
    data = yaml.safe_load(path.read_text())
    assert set(paper_table_ids()) <= set(data)


def test_paired_differences_match_seeds():
    from mlkd.analysis.results import paired_table

    table = ResultTable("t", "thr@0.5", [Column("d", "a", "b")], ["Student", "MLD"])
    table.cells[("Student", 0, "mAP")] = Cell([60.0, 70.0, 65.0], [0, 1, 2])
    table.cells[("MLD", 0, "mAP")] = Cell([61.0, 71.5, 99.0], [0, 1, 5])  # seed 5 has no partner
    paired = paired_table(table, "Student")
    cell = paired.cell("MLD", 0, "mAP")
    assert paired.rows == ["MLD"] and cell.seeds == [0, 1] and cell.values == [1.0, 1.5]
    assert cell.std == pytest.approx(np.std([1.0, 1.5], ddof=1))
    table.cells[("Student", 0, "OF1")] = Cell([50.0, 50.0, 50.0], [0, 1, 2])
    table.cells[("MLD", 0, "OF1")] = Cell([51.0, 49.0, 50.0], [0, 1, 2])  # one up, one down, one tie
    text = render(paired_table(table, "Student"), "md")
    assert "| MLD | **+1.25 ± 0.35 [2/2]** | **+0.00 ± 1.00 [1/3]** |" in text and "[k/n]: the seeds" in text
    with pytest.raises(ConfigError, match="no such row"):
        paired_table(table, "Vanilla")
