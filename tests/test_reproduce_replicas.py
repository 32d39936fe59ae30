"""The paper's own grids (configs/*.yaml: official recipe, dataset loaders, sweep, table beside
the published numbers) run end to end on small replicas of COCO, VOC and NUS-WIDE written by
the test, with a tiny stand-in network for every paper backbone (`models.<name>.name=tiny`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlkd.cli import main as cli_main
from mlkd.config import load_config
from mlkd.reproduce.paper import paper_data
from replicas import write_coco, write_nuswide, write_voc

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = [
    "model.pretrained=false",
    "data.img_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.embed_dim=32",
    "model.ffn_dim=64",
    "model.num_heads=4",
    "optim.epochs=2",
    "teacher_config.optim.stop_epoch=1",
    "train.progress=off",
]


def coco_root(tmp):
    return str(write_coco(tmp / "coco"))


def voc_root(tmp):
    return write_voc(tmp / "voc")["root"]


def nuswide_root(tmp):
    return str(write_nuswide(tmp / "nuswide"))


CASES = [  # grid, replica writer, published table, pair (teacher, student), methods
    ("coco_table4_ablation.yaml", coco_root, "table4", ("resnet101", "resnet34"), None),
    ("voc_table7.yaml", voc_root, "table7", ("resnet50", "resnet18"), "[teacher, vanilla, mld, l2d]"),
    ("nuswide_table5.yaml", nuswide_root, "table5", ("resnet101", "resnet34"), "[teacher, vanilla, l2d]"),
]


@pytest.mark.parametrize("grid,write,paper,pair,methods", CASES, ids=[c[0] for c in CASES])
def test_paper_grid_trains_on_a_replica_and_tabulates_beside_the_paper(
    tmp_path, capsys, grid, write, paper, pair, methods
):
    teacher, student = pair
    overrides = [
        f"data.options.root={write(tmp_path)}",
        *SMALL,
        f"models.{teacher}.name=tiny",
        f"models.{student}.name=tiny",
        f"pairs=[{{teacher: {teacher}, student: {student}}}]",
    ]
    if methods:
        overrides.append(f"methods={methods}")
    out = tmp_path / "runs"
    assert cli_main(["sweep", str(CONFIGS / grid), *overrides, "--out", str(out)]) == 0
    capsys.readouterr()
    runs = sorted(p.parent for p in out.rglob("metrics.jsonl"))
    assert runs, "no run trained"
    for run in runs:
        cfg = load_config(run / "config.yaml")
        assert (cfg.model.name, cfg.data.recipe, cfg.data.options["root"]) == (
            "tiny",
            "official",
            overrides[0].split("=", 1)[1],
        )
    assert (
        cli_main(
            [
                "table",
                str(CONFIGS / grid),
                "--paper",
                paper,
                "--runs",
                str(out),
                *[arg for item in overrides for arg in ("--set", item)],
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    l2d = next(run for run in runs if run.parts[-3:-1] == (f"{teacher}_to_{student}", "l2d"))
    ours = json.loads((l2d / "metrics.jsonl").read_text().splitlines()[-1])["eval"]["thr@0.5"]["mAP"]
    published = next(
        p["rows"]["L2D"][0] for p in paper_data(paper)["pairs"] if (p["teacher"], p["student"]) == (teacher, student)
    )
    row = next(line for line in text.splitlines() if line.startswith("| L2D |")).replace("**", "")
    assert row.startswith(f"| L2D | {100 * ours:.2f} | {published:.2f} |"), (row, ours, published)
