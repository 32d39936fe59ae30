"""The losses benchmark runs and its dispatcher routes (timings are not asserted)."""

import json

from mlkd.bench import BENCHES
from mlkd.bench.__main__ import main as bench_main
from mlkd.bench.losses import bench_losses, format_table


def test_bench_losses_rows_and_table():
    rows = bench_losses(repeats=1, shapes=[(6, 5, 8, 2.0)])
    assert len(rows) == 1
    row = rows[0]
    assert (row["B"], row["q"], row["D"]) == (6, 5, 8)
    assert row["fast_ms"] > 0 and row["loop_ms"] > 0 and row["rel_diff"] < 1e-5
    assert "| 6 | 5 | 8 |" in format_table(rows)


def test_dispatcher(tmp_path, capsys, monkeypatch):
    import mlkd.bench.losses as losses_bench

    monkeypatch.setattr(losses_bench, "SHAPES", ((4, 3, 2, 1.5),))
    out = tmp_path / "losses.json"
    assert bench_main(["losses", "--repeats", "1", "--json", str(out)]) == 0
    assert "speed-up" in capsys.readouterr().out
    assert json.loads(out.read_text())[0]["B"] == 4
    assert bench_main(["nope"]) == 2
    assert "losses" in BENCHES
