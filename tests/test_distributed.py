"""Two-process DDP (gloo on CPU) under torchrun: distil, then compare evaluations exactly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from engine_helpers import tiny_config
from mlkd.engine.evaluation import evaluate_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit

pytestmark = pytest.mark.slow  # subprocesses / torchrun


def test_torchrun_two_processes_evaluates_each_sample_once(tmp_path):
    cache = tmp_path / "cache"
    fit(tiny_config(tmp_path / "teacher", cache, epochs=1))
    teacher = str(tmp_path / "teacher" / "checkpoints" / "last.pt")
    cfg = tiny_config(tmp_path / "ddp", cache, method="l2d", teacher=teacher, epochs=1)
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mlkd.cli",
        "distill",
        "--config",
        str(config_file),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = read_jsonl(tmp_path / "ddp" / "metrics.jsonl")[-1]["eval"]
    # 67 test images over 2 ranks: an odd count, so padding would have duplicated one.
    assert logged["num_images"] == 67
    single = evaluate_checkpoint(str(tmp_path / "ddp" / "checkpoints" / "last.pt"), device="cpu")
    for protocol in ("thr@0.5", "oracle-k"):
        for key in ("mAP", "OF1", "CF1", "CP", "CR", "OP", "OR"):
            assert single[protocol][key] == logged[protocol][key], (protocol, key)


def test_torchrun_builds_the_teacher_cache_in_shards_equal_to_one_process(tmp_path):
    """distill.cache under 2 gloo ranks: each rank fills its shard of one temporary folder, rank 0
    publishes it; the arrays equal a cache built by a single process (fp16 rounding). A flipped
    byte is found by rank 0 (one log line) and the cache rebuilt by both ranks."""
    import json

    import numpy as np

    from mlkd.engine.trainer import build_run

    data = tmp_path / "data"
    fit(tiny_config(tmp_path / "teacher", data, epochs=1))
    teacher = str(tmp_path / "teacher" / "checkpoints" / "last.pt")
    cfg = tiny_config(
        tmp_path / "ddp", data, method="l2d", teacher=teacher, epochs=1, distill={"cache": str(tmp_path / "cache-ddp")}
    )
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mlkd.cli",
        "distill",
        "--config",
        str(config_file),
    ]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_jsonl(tmp_path / "ddp" / "metrics.jsonl")[-1]["epoch"] == 1
    build_run(
        tiny_config(
            tmp_path / "single",
            data,
            method="l2d",
            teacher=teacher,
            epochs=1,
            distill={"cache": str(tmp_path / "cache-single")},
        )
    )
    ddp, single = tmp_path / "cache-ddp", tmp_path / "cache-single"
    assert not list(tmp_path.glob(".cache-ddp.tmp-*")), "the temporary build folder was left behind"
    meta = [json.loads(next(folder.glob("*.json")).read_text()) for folder in (ddp, single)]
    assert meta[0]["complete"] and meta[0]["num_images"] == meta[1]["num_images"] == 128
    assert np.load(ddp / "written.npy").all()
    arrays = sorted(single.glob("*.npy"))
    assert {"logits.npy", "label_embeddings.npy", "pooled.npy"} <= {path.name for path in arrays}
    for path in arrays:
        np.testing.assert_allclose(
            np.load(ddp / path.name).astype(np.float32),
            np.load(path).astype(np.float32),
            rtol=2**-10,
            atol=1e-4,
            err_msg=path.name,
        )
    # A damaged file under torchrun: rank 0 finds it, every rank follows its verdict and rebuilds.
    with open(ddp / "logits.npy", "r+b") as handle:
        handle.seek(-7, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-7, os.SEEK_END)
        handle.write(bytes([byte[0] ^ 0x20]))
    config_file.write_text(yaml.safe_dump({**cfg.to_dict(), "run_dir": str(tmp_path / "ddp-rebuilt")}))
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("logits.npy does not match") == 1 and "rebuilding it" in done.stderr
    np.testing.assert_allclose(
        np.load(ddp / "logits.npy").astype(np.float32),
        np.load(single / "logits.npy").astype(np.float32),
        rtol=2**-10,
        atol=1e-4,
    )
