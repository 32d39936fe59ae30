"""Evaluation throughput (images/s) of the engine's ``predict``, per model and memory format.

``python -m mlkd.bench eval [--models resnet18 resnet34] [--img-size 224] [--batch-size 64]
[--num-images 128] [--classes 80] [--repeats 3] [--threads T] [--device cpu] [--amp off]
[--json PATH]``

Times ``mlkd.engine.evaluation.predict`` (eval mode, ``no_grad``, autocast per ``--amp``,
sigmoid scores gathered on the host: what ``fit`` and ``mlkd eval`` run) over ``--num-images``
in-memory random images (no decoding: ``mlkd bench data`` measures loading), for each model in
the default NCHW layout and in channels_last. Rounds are interleaved over the variants (order
reversed every other round); the
table shows the median images/s of ``--repeats`` rounds after one warm-up round, and the
channels_last / NCHW ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from mlkd.bench.common import SyntheticImages, bench_config, build_net, machine, median, parse_args, report, timed
from mlkd.data.batch import collate
from mlkd.engine.evaluation import predict
from mlkd.engine.runtime import resolve_precision


def bench_eval(
    models: Sequence[str] = ("resnet18", "resnet34"),
    img_size: int = 224,
    batch_size: int = 64,
    num_images: int = 128,
    num_classes: int = 80,
    repeats: int = 3,
    device: str = "cpu",
    amp: str = "off",
    head: dict | None = None,
) -> list[dict]:
    """One dict per (model, layout): median images/s and seconds of ``predict``. ``head``:
    model-section overrides (default: the paper's label-wise head)."""
    dev = torch.device(device)
    cfg = bench_config(models[0], img_size, batch_size, device, amp, False, head)
    precision = resolve_precision(amp, dev)
    dataset = SyntheticImages(num_images, img_size, num_classes, 2.9)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, pin_memory=dev.type == "cuda")
    variants = []
    for name in models:
        model = build_net(name, cfg, num_classes, dev, seed=0).eval()
        variants.append((name, "NCHW", model, False))
        last = build_net(name, cfg, num_classes, dev, seed=0).eval()
        variants.append((name, "channels_last", last.to(memory_format=torch.channels_last), True))
    seconds: dict[int, list[float]] = {k: [] for k in range(len(variants))}
    for r in range(1 + repeats):
        order = list(range(len(variants)))
        for k in order if r % 2 == 0 else order[::-1]:  # no variant always runs first
            _, _, model, channels_last = variants[k]
            wall, _ = timed(
                lambda model=model, channels_last=channels_last: predict(
                    model, loader, dev, precision, channels_last=channels_last
                ),
                dev,
            )
            if r:
                seconds[k].append(wall)
    rows = []
    for k, (name, layout, _, _) in enumerate(variants):
        s = median(seconds[k])
        rows.append(
            {
                "model": name,
                "layout": layout,
                "images": num_images,
                "seconds": round(s, 4),
                "images_per_s": round(num_images / s, 1),
                "img_size": img_size,
                "batch_size": batch_size,
                "classes": num_classes,
                "device": device,
                "amp": amp,
                "repeats": repeats,
                "threads": torch.get_num_threads(),
            }
        )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    lines = ["| model | layout | images/s (median) | seconds | vs NCHW |", "|---|---|---:|---:|---:|"]
    nchw = {r["model"]: r["images_per_s"] for r in rows if r["layout"] == "NCHW"}
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layout']} | {r['images_per_s']:.1f} | {r['seconds']:.2f} "
            f"| {r['images_per_s'] / nchw[r['model']]:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlkd bench eval", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet34"])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-images", type=int, default=128)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: unchanged)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "auto", "bf16", "fp16"])
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parse_args(parser, argv)
    rows = bench_eval(
        args.models, args.img_size, args.batch_size, args.num_images, args.classes, args.repeats, args.device, args.amp
    )
    return report(
        f"Evaluation (predict: forward + sigmoid, no_grad), {args.img_size}x{args.img_size}, "
        f"batch {args.batch_size}, q={args.classes}, amp {args.amp}, {args.num_images} "
        f"in-memory images; median of {args.repeats} rounds ({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
