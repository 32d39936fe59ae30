"""Training-step speed by precision and layout: full precision against bf16 autocast,
``channels_last`` and ``torch.compile``, as ratios to the full-precision step from one run.

``python -m mlkd.bench precision [--cells efficientnet_lite0:64 efficientnet_lite0:96
efficientnet_lite2:64 efficientnet_lite2:96 resnet34:96] [--variants fp32 bf16 fp32+cl bf16+cl]
[--batch-size 64] [--classes 80] [--head scenes|paper] [--repeats 5] [--warmup 2] [--threads T]
[--device cpu] [--json PATH]``

Each row times ``mlkd.engine.step.train_step`` (forward, BCE, backward, Adam and schedule
steps) of a vanilla student with the label-wise head, built by the engine's builders. A
variant is ``fp32`` (``train.amp: off``) or ``bf16`` (``train.amp: bf16``), plus ``+cl``
(``train.channels_last``) and/or ``+compile`` (``train.compile``; its compilation happens in
the warmup rounds, so give it enough of them). Every variant of a cell has its own network
(same initial weights) and Adam state; rounds run one step of every variant in turn, the order
reversed every other round; the table gives the median ms per step and the median of the
per-round speedups over ``fp32`` (wall clock and process CPU time). ``--head scenes`` is the
scenes recipe's head (D 128, 4 heads, FFN 256), ``paper`` the paper's (D 768, 8 heads, FFN 2048).
"""

from __future__ import annotations

from typing import Sequence

import torch

from mlkd.bench.common import (
    SyntheticImages,
    batches_of,
    bench_config,
    interleaved_rounds,
    machine,
    make_run,
    median,
    parse_args,
    report,
)

CELLS = (
    "efficientnet_lite0:64",
    "efficientnet_lite0:96",
    "efficientnet_lite2:64",
    "efficientnet_lite2:96",
    "resnet34:96",
)
VARIANTS = ("fp32", "bf16", "fp32+cl", "bf16+cl")
HEADS = {"scenes": {"embed_dim": 128, "num_heads": 4, "ffn_dim": 256}, "paper": {}}


def variant_settings(variant: str) -> dict:
    """``bf16+cl+compile`` -> bench_config keywords (amp, channels_last, compile)."""
    precision, *flags = variant.split("+")
    if precision not in ("fp32", "bf16") or set(flags) - {"cl", "compile"}:
        raise ValueError(f"bench precision: variant {variant!r} is not fp32|bf16[+cl][+compile]")
    return {
        "amp": "off" if precision == "fp32" else "bf16",
        "channels_last": "cl" in flags,
        "compile": "compile" in flags,
    }


def bench_cell(
    model: str,
    img_size: int,
    variants: Sequence[str],
    batch_size: int,
    num_classes: int,
    head: dict,
    repeats: int,
    warmup: int,
    device: str,
) -> dict[str, tuple[list[float], list[float]]]:
    """variant -> (wall seconds, CPU seconds) of each timed round, for one model and input size."""
    dev = torch.device(device)
    batches = batches_of(SyntheticImages(2 * batch_size, img_size, num_classes, 2.9), batch_size)
    runs = {}
    for v in variants:
        cfg = bench_config(model, img_size, batch_size, device, head=head, **variant_settings(v))
        runs[v] = make_run("vanilla", cfg, num_classes, None)
    return interleaved_rounds(runs, batches, repeats, warmup, dev)


def bench_precision(
    cells: Sequence[str] = CELLS,
    variants: Sequence[str] = VARIANTS,
    batch_size: int = 64,
    num_classes: int = 80,
    head: str = "scenes",
    repeats: int = 5,
    warmup: int = 2,
    device: str = "cpu",
) -> list[dict]:
    """One dict per (cell, variant): ms per step and speedups over ``fp32`` (always timed)."""
    variants = list(dict.fromkeys(["fp32", *variants]))
    for v in variants:
        variant_settings(v)
    rows = []
    for cell in cells:
        model, _, size = cell.partition(":")
        times = bench_cell(
            model, int(size or 64), variants, batch_size, num_classes, HEADS[head], repeats, warmup, device
        )
        ref_wall, ref_cpu = times["fp32"]
        for v in variants:
            wall, cpu = times[v]
            rows.append(
                {
                    "model": model,
                    "img_size": int(size or 64),
                    "variant": v,
                    "ms": round(1e3 * median(wall), 1),
                    "cpu_ms": round(1e3 * median(cpu), 1),
                    "speedup": round(median([b / a for a, b in zip(wall, ref_wall)]), 3),
                    "cpu_speedup": round(median([b / a for a, b in zip(cpu, ref_cpu)]), 3),
                    "head": head,
                    "batch_size": batch_size,
                    "classes": num_classes,
                    "repeats": repeats,
                    "device": device,
                    "threads": torch.get_num_threads(),
                    "wall_s": wall,
                    "cpu_s": cpu,
                }
            )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of ``bench_precision`` rows (speedup > 1: faster than fp32)."""
    lines = [
        "| model | input | variant | ms / step | speedup x fp32 | speedup (CPU time) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['img_size']} | {r['variant']} | {r['ms']:.0f} "
            f"| {r['speedup']:.2f} | {r['cpu_speedup']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="mlkd bench precision", description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), help="model:input_size")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="fp32|bf16[+cl][+compile]")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--head", choices=sorted(HEADS), default="scenes")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per cell (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compilation happens here)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: unchanged)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parse_args(parser, argv)
    rows = bench_precision(
        args.cells, args.variants, args.batch_size, args.classes, args.head, args.repeats, args.warmup, args.device
    )
    return report(
        f"Training step by precision (train_step: label-wise head {args.head}, q={args.classes}, BCE, "
        f"backward, Adam), batch {args.batch_size}; median of {args.repeats} interleaved rounds per cell "
        f"({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
