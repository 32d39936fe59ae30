"""``mlkd table --paper`` compares F1 under the official code's rule (``oracle-k-strict``) and
names the protocol in every table; a model named with a timm weights tag (the official recipe's
``resnet101.tv_in1k``) matches the paper's column."""

import csv
import io
import json

import yaml

from mlkd.cli import main as cli_main
from mlkd.reproduce.paper import paper_data, paper_f1_protocol, paper_table_ids
from mlkd.reproduce.report import default_protocol, table_text


def test_every_published_f1_is_under_oracle_k_strict():
    with_f1 = [t for t in paper_table_ids() if "OF1" in paper_data(t).get("metrics", ())]
    assert len(with_f1) >= 6
    assert {paper_f1_protocol(t) for t in with_f1} == {"oracle-k-strict"}
    assert default_protocol("table1") == "oracle-k-strict" and default_protocol(None) == "thr@0.5"


def fake_runs(root, protocols):
    """A finished teacher run (resnet101 with the official weights tag) and a vanilla student
    distilled from it (a distill run), each logging ``protocols`` with distinct F1 per protocol."""
    teacher = root / "teacher"
    student = root / "student"
    for run, model, extra in (
        (teacher, "resnet101.tv_in1k", {}),
        (
            student,
            "resnet34.tv_in1k",
            {"distill": {"method": "l2d", "teacher": str(teacher / "checkpoints" / "last.pt")}},
        ),
    ):
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(
            yaml.safe_dump({"model": {"name": model}, "data": {"name": "coco2014"}, "optim": {"epochs": 1}, **extra})
        )
        evals = {p: {"mAP": 0.70, "OF1": 0.60 + 0.01 * i, "CF1": 0.50} for i, p in enumerate(protocols)}
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "eval": evals}) + "\n")
    return root


def test_paper_tables_default_to_the_official_rule_and_name_it(tmp_path):
    root = fake_runs(tmp_path / "runs", ["thr@0.5", "oracle-k", "oracle-k-strict"])
    md = table_text([str(root)], paper="table1")
    captions = [line for line in md.splitlines() if line.startswith("*")]
    assert captions and all("protocol oracle-k-strict" in c for c in captions)
    assert (
        "| L2D | **70.00** | **72.87** | **62.00** | **74.45** |" in md
    )  # tagged names matched; OF1 under oracle-k-strict
    assert "pass --protocol" not in md  # same protocol as the paper's: no warning
    other = table_text([str(root)], protocol="thr@0.5", paper="table1")
    assert "protocol thr@0.5" in other and "pass --protocol oracle-k-strict" in other
    assert "protocol thr@0.5" in table_text([str(root)])  # without --paper: the common rule


def test_cli_names_the_protocol_in_every_format(tmp_path, capsys):
    root = fake_runs(tmp_path / "runs", ["thr@0.5", "oracle-k-strict"])
    assert cli_main(["table", str(root), "--paper", "table1", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["protocol"] for r in rows} == {"oracle-k-strict"}
    assert cli_main(["table", str(root), "--paper", "table1", "--format", "latex"]) == 0
    assert "oracle-k-strict" in capsys.readouterr().out
    assert cli_main(["table", "--paper", "table2"]) == 0  # the published table alone
    assert "OF1/CF1 under oracle-k-strict" in capsys.readouterr().out
