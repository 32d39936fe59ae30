"""The step / memory / eval benchmarks run on tiny models and the cache benchmark on a tiny
cache (timings are not asserted), and the CPU peak-memory measure sees allocations exactly."""

import json

import pytest
import torch

from mlkd.bench import BENCHES
from mlkd.bench.__main__ import main as bench_main
from mlkd.bench.eval import bench_eval
from mlkd.bench.eval import format_table as eval_table
from mlkd.bench.memory import bench_memory, peak_bytes
from mlkd.bench.step import bench_step
from mlkd.bench.step import format_table as step_table

TINY = {
    "teacher": "tiny",
    "student": "tiny",
    "img_size": 32,
    "batch_size": 8,
    "num_classes": 6,
    "head": {"embed_dim": 32, "ffn_dim": 64, "num_heads": 4},
}


def test_step_bench_rows_ratios_and_table():
    rows = bench_step(**TINY, methods=["mld", "l2d", "l2d+cache", "l2d+diagnostics"], repeats=1, warmup=0)
    by = {r["method"]: r for r in rows}
    assert list(by) == ["vanilla", "mld", "l2d", "l2d+cache", "l2d+diagnostics"]
    assert by["vanilla"]["ratio"] == 1.0 and all(r["ms"] > 0 and r["cpu_ms"] >= 0 for r in rows)
    assert by["l2d+cache"]["teacher"] == "cache" and by["vanilla"]["teacher"] == "-"
    table = step_table(rows)
    assert "L2D step / MLD step" in table and "teacher cache / BCE-only" in table
    assert "measured by the term diagnostics / L2D step" in table


def test_memory_bench_and_peak_measure():
    def allocate():
        a = torch.empty(2**20, dtype=torch.uint8)
        b = torch.empty(3 * 2**20, dtype=torch.uint8)
        del a
        c = torch.empty(2 * 2**20, dtype=torch.uint8)
        del b, c

    assert peak_bytes(allocate, torch.device("cpu")) == 5 * 2**20
    rows = bench_memory(**TINY, methods=["vanilla", "l2d", "l2d+cache"])
    by = {r["method"]: r for r in rows}
    assert by["l2d"]["resident_mib"] > by["vanilla"]["resident_mib"]  # + the teacher's weights
    assert by["l2d+cache"]["resident_mib"] == by["vanilla"]["resident_mib"]
    assert all(r["step_peak_mib"] > 0 for r in rows)


def test_eval_bench_and_dispatcher(tmp_path, capsys, monkeypatch):
    rows = bench_eval(["tiny"], img_size=32, batch_size=8, num_images=16, num_classes=6, repeats=1, head=TINY["head"])
    assert [r["layout"] for r in rows] == ["NCHW", "channels_last"] and rows[0]["images_per_s"] > 0
    assert "vs NCHW" in eval_table(rows)
    assert {"losses", "step", "eval", "data", "memory"} <= set(BENCHES)
    import mlkd.bench.step as step_bench

    real = step_bench.bench_step
    monkeypatch.setattr(step_bench, "bench_step", lambda *a, **k: real(*a, **{**k, "head": TINY["head"]}))
    out = tmp_path / "step.json"
    argv = [
        "step",
        "--teacher",
        "tiny",
        "--student",
        "tiny",
        "--img-size",
        "32",
        "--batch-size",
        "4",
        "--classes",
        "5",
        "--methods",
        "mld",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--json",
        str(out),
    ]
    assert bench_main(argv) == 0
    assert "x BCE-only" in capsys.readouterr().out
    assert [r["method"] for r in json.loads(out.read_text())] == ["vanilla", "mld"]


def test_hostsync_check_runs_every_method_on_the_device_code_path(monkeypatch, capsys):
    """On CPU nothing can be checked, but forced onto the CUDA code path (deferred non-finite
    checks, fused Adam) every method's steps run and the rows say what was (not) checked."""
    import mlkd.bench.hostsync as hostsync
    import mlkd.engine.step as step_module

    monkeypatch.setattr(step_module, "DEFERRED_DEVICE_TYPES", ("cuda", "cpu"))
    rows = hostsync.check_host_syncs(**TINY, steps=2, warmup=1)
    assert [r["method"] for r in rows] == list(hostsync.METHODS)
    assert all(r["deferred_checks"] and not r["checked"] and r["syncs"] == "none" for r in rows)
    assert "not checked on cpu" in hostsync.format_table(rows)
    assert "hostsync" in BENCHES


def test_cache_bench_times_the_check_of_a_sealed_cache(tmp_path, capsys, monkeypatch):
    from mlkd import fileio

    monkeypatch.setattr(fileio, "RACY_S", 0.0)  # no 2 s wait before the digests are remembered
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"epoch": e, "train": {"seconds": s}, "data": {"train": {"images": 16}}} for e, s in [(1, 4), (2, 2), (3, 3)]
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "cache.json"
    argv = ["cache", "--images", "16", "--classes", "4", "--embed-dim", "8", "--pooled-dim", "8", "--views", "2"]
    assert bench_main([*argv, "--run", str(run), "--folder", str(tmp_path), "--json", str(out)]) == 0
    assert "epoch 3.0 s (median of" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [r["check"].split(" ")[0] for r in rows] == ["SHA-256", "cold", "warm", "remembered"]
    for row in rows[1:]:
        assert row["seconds"] > 0 and row["epoch_ratio"] == pytest.approx(row["seconds"] / 3.0, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "run"]  # the cache folder is removed


def test_bench_precision_and_finetune_time_every_variant_in_one_run():
    """The precision benchmark times each variant against fp32 in the same interleaved rounds
    (fp32 always included, its own speedup exactly 1); bad variants are refused by name."""
    from mlkd.bench.finetune import bench_finetune
    from mlkd.bench.precision import bench_precision, format_table

    rows = bench_precision(["tiny:32"], ["bf16", "fp32+cl"], batch_size=4, num_classes=5, repeats=2, warmup=0)
    assert [r["variant"] for r in rows] == ["fp32", "bf16", "fp32+cl"]
    assert rows[0]["speedup"] == 1.0 and all(r["ms"] > 0 and len(r["wall_s"]) == 2 for r in rows)
    assert "| tiny | 32 | bf16 |" in format_table(rows)
    with pytest.raises(ValueError, match="fp16"):
        bench_precision(["tiny:32"], ["fp16"], repeats=1, warmup=0)
    rows = bench_finetune(["tiny"], [32], batch_size=4, num_classes=5, repeats=2, warmup=0, reference="tiny")
    assert len(rows) == 1 and rows[0]["speed_vs_ref"] == 1.0 and len(rows[0]["cpu_s"]) == 2
