"""Data-loading throughput: JPEG decode + the official train transforms, 0/1/2 workers.

``python -m mlkd.bench data [--num-images N] [--workers 0 1 2] [--img-size S] [--json PATH]``
writes a synthetic replica of JPEGs (default 256 images of 500x375, the VOC/COCO typical size)
to a temporary folder, loads it with a DataLoader per worker count and prints a markdown table
of images/s. Each row first loads one warm-up batch (worker start-up is not timed), then
times ``--repeats`` full epochs and reports the median. With 0 workers it also runs with one
torch thread in the main process: intra-op threads compete with decoding on small machines.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mlkd.bench.common import machine, report
from mlkd.data.batch import collate
from mlkd.data.images import MultiLabelImageDataset
from mlkd.data.transforms import build_transform

logger = logging.getLogger(__name__)


def write_jpegs(folder: Path, num_images: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """Photo-like JPEGs (smooth gradients + noise, quality 90) of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for k in range(num_images):
        phase = rng.uniform(0, 2 * np.pi, 3)
        freq = rng.uniform(0.005, 0.05, 3)
        planes = [127 + 100 * np.sin(freq[c] * (xx + 0.7 * yy) + phase[c]) for c in range(3)]
        pixels = np.stack(planes, axis=2) + rng.normal(0, 12, (h, w, 3))
        path = folder / f"{k:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _time_epochs(dataset, workers: int, batch_size: int, repeats: int) -> float:
    """Median seconds of ``repeats`` full epochs, after one warm-up batch."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )
    next(iter(loader))  # warm-up: worker start-up and first decode are not timed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = sum(batch["images"].shape[0] for batch in loader)
        times.append(time.perf_counter() - start)
        if seen != len(dataset):
            raise RuntimeError(f"bench data: loaded {seen} of {len(dataset)} images")
    return float(np.median(times))


def bench_data(
    num_images: int = 256,
    workers: Sequence[int] = (0, 1, 2),
    img_size: int = 224,
    batch_size: int = 32,
    image_size: tuple[int, int] = (500, 375),
    recipe: str = "official",
    seed: int = 0,
    repeats: int = 3,
    main_threads: int | None = None,
) -> list[dict]:
    """Images/s of decode + ``recipe`` train transforms for each worker count.

    ``seconds`` is the median of ``repeats`` epochs. ``main_threads`` sets torch's intra-op
    threads in this process for the run (None: unchanged); workers always use 1 (DataLoader
    default). Returns one dict per worker count: {"workers", "main_threads", "images",
    "seconds", "images_per_s", "img_size", "source_size", "recipe"}.
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlkd-bench-data-") as tmp:
        paths = write_jpegs(Path(tmp), num_images, image_size, seed)
        samples = [(p, (k % 3,)) for k, p in enumerate(paths)]
        dataset = MultiLabelImageDataset(
            samples,
            ["a", "b", "c"],
            build_transform(recipe, img_size, train=True),
            name="bench",
            split="train",
            source=tmp,
        )
        torch.manual_seed(seed)
        previous = torch.get_num_threads()
        try:
            if main_threads:
                torch.set_num_threads(main_threads)
            for n in workers:
                seconds = _time_epochs(dataset, n, batch_size, repeats)
                rows.append(
                    {
                        "workers": n,
                        "main_threads": torch.get_num_threads(),
                        "images": num_images,
                        "seconds": round(seconds, 4),
                        "images_per_s": round(num_images / seconds, 1),
                        "img_size": img_size,
                        "recipe": recipe,
                        "source_size": f"{image_size[0]}x{image_size[1]}",
                    }
                )
                logger.info("bench data: %d workers, %.1f images/s", n, rows[-1]["images_per_s"])
        finally:
            torch.set_num_threads(previous)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of ``bench_data`` rows, with the speed-up over the first row."""
    base = rows[0]["images_per_s"] if rows else 1.0
    lines = [
        "| workers | main-process torch threads | images | seconds (median) | images/s | vs first |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['main_threads']} | {r['images']} | {r['seconds']:.2f} "
            f"| {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlkd bench data", description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--recipe", default="official")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per row (median)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = bench_data(
        args.num_images, args.workers, args.img_size, args.batch_size, recipe=args.recipe, repeats=args.repeats
    )
    if 0 in args.workers and torch.get_num_threads() > 1:  # in-process loading, 1 thread
        rows += bench_data(
            args.num_images,
            [0],
            args.img_size,
            args.batch_size,
            recipe=args.recipe,
            repeats=args.repeats,
            main_threads=1,
        )
    src = rows[0]["source_size"] if rows else "-"
    return report(
        f"Data loading: JPEG {src} decode + {args.recipe} train transforms at "
        f"{args.img_size}, batch {args.batch_size} ({machine('cpu')})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
