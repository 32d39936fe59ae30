"""What checking a teacher cache's digests costs, against one distillation epoch.

``python -m mlkd.bench cache [--images 2400] [--classes 80] [--embed-dim 768] [--pooled-dim 1280]
[--views 6] [--epoch-seconds 32 | --run RUN_DIR] [--coco-gb 10.4] [--folder DIR] [--json PATH]``
writes a cache-shaped folder (random float16 arrays of that shape, sealed with their digests by
the build's own ``publish``) and opens it with ``TeacherCache``, timing the check: cold (the
files' pages dropped from the page cache first with ``posix_fadvise``: disk read + hash), warm
(pages cached: hash only) and remembered (a second open in the process), in wall and process
CPU seconds (on a loaded machine the CPU seconds are the steadier figure). Each row gives the
throughput, the time it implies for a COCO-sized cache (``--coco-gb`` per view) and its ratio
to one epoch (``--epoch-seconds``, or the median epoch of the run folder ``--run``). The
defaults are the coco_scenes distillation: 2,400 images, q = 80, D = 768, F = 1280
(EfficientNet-Lite2), 6 views. The folder is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from mlkd import fileio
from mlkd.bench.common import machine, report, timed
from mlkd.engine import cache_files
from mlkd.engine.teacher_cache import FORMAT_VERSION, TeacherCache
from mlkd.runrecord import epoch_records

CPU = torch.device("cpu")


def write_cache(folder: Path, images: int, classes: int, embed_dim: int, pooled_dim: int, views: int) -> int:
    """A cache folder of random float16 arrays of this shape, sealed as a build seals it; bytes."""
    shapes = {"logits": (classes,), "label_embeddings": (classes, embed_dim), "pooled": (pooled_dim,)}
    need = sum(views * images * int(np.prod(s)) * 2 for s in shapes.values()) + views * images
    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as lock:
        tmp = cache_files.make_temporary(folder, need, lock)
        for name, shape in shapes.items():
            array = np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float16, (views, images, *shape))
            for view in range(views):
                for start in range(0, images, 256):
                    rows = array[view, start : start + 256]
                    rows[...] = rng.standard_normal(rows.shape, dtype=np.float32)
            array.flush()
            del array
            np.save(tmp / f"offset_{name}.npy", np.zeros(shape, np.float32))
        np.save(tmp / "written.npy", np.ones((views, images), np.uint8))
        meta = {
            "format": FORMAT_VERSION,
            "fingerprint": {"view": {"policy": "eval"}},
            "num_images": images,
            "views": views,
            "fields": {name: list(shape) for name, shape in shapes.items()},
            "dtype": "float16",
            "complete": True,
        }
        cache_files.publish(tmp, folder, meta)
    return sum(p.stat().st_size for p in folder.glob("*.npy"))


def drop_page_cache(folder: Path) -> bool:
    """Ask the kernel to drop the cached pages of the folder's files; False where it cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _open_seconds(folder: Path) -> tuple[float, float]:
    """(wall, process CPU) seconds of opening the cache folder (its check included)."""
    return timed(lambda: TeacherCache(folder), CPU)


def memory_sha256_seconds(nbytes: int = 256 * 2**20) -> tuple[float, float]:
    """(wall, CPU) seconds to hash ``nbytes`` already in memory: the CPU bound of the check."""
    block = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    return timed(lambda: hashlib.sha256(block).hexdigest(), CPU)


def epoch_seconds_of(run_dir: Path) -> tuple[float, int]:
    """(median training seconds per epoch, training images) of a run folder's metrics.jsonl."""
    trains = [r["train"] for r in epoch_records(run_dir) if "seconds" in r.get("train", {})]
    if not trains:
        raise SystemExit(f"mlkd bench cache: no epoch with train.seconds in {run_dir}/metrics.jsonl")
    images = next((r["data"]["train"]["images"] for r in epoch_records(run_dir) if "data" in r), 0)
    return statistics.median(t["seconds"] for t in trains), images


def bench_cache(
    images: int = 2400,
    classes: int = 80,
    embed_dim: int = 768,
    pooled_dim: int = 1280,
    views: int = 6,
    epoch_seconds: float = 32.0,
    coco_gb: float = 10.4,
    folder: Optional[Path] = None,
) -> list[dict]:
    """Rows {"check", "seconds", "cpu_seconds", "cache_gb", "gb_per_s", "coco_view_seconds",
    "epoch_ratio"} (wall-clock figures; CPU seconds for a loaded machine)
    the cache folder is written under ``folder`` (default: a
    temporary folder) and removed."""
    with tempfile.TemporaryDirectory(prefix="mlkd-bench-cache-", dir=folder) as tmp:
        cache = Path(tmp) / "cache"
        nbytes = write_cache(cache, images, classes, embed_dim, pooled_dim, views)
        time.sleep(fileio.RACY_S + 0.1)  # old enough for its digests to be remembered
        timings = {}
        fileio.forget_digests()
        if drop_page_cache(cache):
            timings["cold (disk read + SHA-256)"] = _open_seconds(cache)
        fileio.forget_digests()
        _open_seconds(cache)  # the pages are cached now, whatever the cold row did
        fileio.forget_digests()
        timings["warm (page cache + SHA-256)"] = _open_seconds(cache)
        timings["remembered (second open)"] = _open_seconds(cache)
    hashed = 256 * 2**20
    rows = [_row("SHA-256 in memory (256 MiB)", memory_sha256_seconds(hashed), hashed, coco_gb, epoch_seconds)]
    rows += [_row(check, seconds, nbytes, coco_gb, epoch_seconds) for check, seconds in timings.items()]
    return rows


def _row(check: str, timing: tuple[float, float], nbytes: int, coco_gb: float, epoch_seconds: float) -> dict:
    seconds, cpu = timing
    rate = nbytes / seconds / 1e9 if seconds > 0 else float("inf")
    return {
        "check": check,
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu, 4),
        "cache_gb": round(nbytes / 1e9, 3),
        "gb_per_s": round(rate, 3),
        "coco_view_seconds": round(coco_gb / rate, 2) if "remembered" not in check else None,
        "epoch_ratio": round(seconds / epoch_seconds, 5) if "memory" not in check else None,
    }


def format_table(rows: Sequence[dict], epoch_seconds: float, coco_gb: float) -> str:
    lines = [
        f"| check | GB | wall s | CPU s | GB/s (wall) | COCO view ({coco_gb:g} GB), s "
        f"| / one epoch ({epoch_seconds:.1f} s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        coco = "-" if r["coco_view_seconds"] is None else f"{r['coco_view_seconds']:.1f}"
        ratio = "-" if r["epoch_ratio"] is None else f"{r['epoch_ratio']:.4f}"
        lines.append(
            f"| {r['check']} | {r['cache_gb']:.2f} | {r['seconds']:.3f} | {r['cpu_seconds']:.3f} "
            f"| {r['gb_per_s']:.2f} | {coco} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlkd bench cache", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2400)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--embed-dim", type=int, default=768)
    parser.add_argument("--pooled-dim", type=int, default=1280)
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--epoch-seconds", type=float, default=32.0, help="one distillation epoch, seconds")
    parser.add_argument("--run", type=Path, help="take the epoch seconds from this run folder's metrics.jsonl")
    parser.add_argument("--coco-gb", type=float, default=10.4, help="GB of a COCO cache per view")
    parser.add_argument("--folder", type=Path, help="where to write the cache (default: the temp folder)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    epoch, source = args.epoch_seconds, "given"
    if args.run:
        epoch, trained = epoch_seconds_of(args.run)
        source = f"median of {args.run} ({trained} images)"
    rows = bench_cache(
        args.images, args.classes, args.embed_dim, args.pooled_dim, args.views, epoch, args.coco_gb, args.folder
    )
    header = (
        f"Teacher-cache check: {args.images} images x {args.views} view(s), q={args.classes}, "
        f"D={args.embed_dim}, F={args.pooled_dim}; epoch {epoch:.1f} s ({source}) ({machine('cpu')})"
    )
    return report(header, format_table(rows, epoch, args.coco_gb), rows, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
