"""Fine-tuning speed of the backbones with offline ImageNet weights beside the paper's small ones.

``python -m mlkd.bench finetune [--models efficientnet_lite0 efficientnet_lite2 resnet18
mobilenetv2] [--img-sizes 64 96 128] [--batch-size 32] [--classes 80] [--repeats 5]
[--warmup 1] [--reference resnet18] [--threads T] [--device cpu] [--json PATH]``

Each row times ``mlkd.engine.step.train_step`` for the MultiLabelNet as it fine-tunes (the
paper's label-wise head, D = 768, q = ``--classes``; forward, BCE, backward, Adam and schedule
steps), built by the engine's builders with the input normalisation its weights need (the
weight values do not change the time: the networks are randomly initialised, so no weights
are read). Per input size, rounds run one step of every model in turn, the order reversed
every other round; the table gives the median images/s and the median of the per-round ratios
to ``--reference`` at the same size (wall clock and process CPU time).
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

MODELS = ("efficientnet_lite0", "efficientnet_lite2", "resnet18", "mobilenetv2")


def _run(name: str, img_size: int, batch_size: int, num_classes: int, device: str):
    """A vanilla (BCE) run of ``name``; packaged backbones get their pretrained input norm."""
    from mlkd.models.names import resolve_model_name
    from mlkd.models.packaged import packaged_source

    cfg = bench_config(name, img_size, batch_size, device, "off", False)
    if packaged_source(resolve_model_name(name)) is not None:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": True})})
    return make_run("vanilla", cfg, num_classes, None)


def bench_size(
    models: Sequence[str], img_size: int, batch_size: int, num_classes: int, repeats: int, warmup: int, device: str
) -> dict[str, tuple[list[float], list[float]]]:
    """model -> (wall seconds, CPU seconds) of each timed round at ``img_size``."""
    dev = torch.device(device)
    batches = batches_of(SyntheticImages(2 * batch_size, img_size, num_classes, 2.9), batch_size)
    runs = {m: _run(m, img_size, batch_size, num_classes, device) for m in models}
    return interleaved_rounds(runs, batches, repeats, warmup, dev)


def bench_finetune(
    models: Sequence[str] = MODELS,
    img_sizes: Sequence[int] = (64, 96, 128),
    batch_size: int = 32,
    num_classes: int = 80,
    repeats: int = 5,
    warmup: int = 1,
    reference: str = "resnet18",
    device: str = "cpu",
) -> list[dict]:
    """One dict per (model, size): img/s, ms per step and ratios to ``reference`` (timed too)."""
    models = list(dict.fromkeys([*models, reference]))
    rows = []
    for size in img_sizes:
        times = bench_size(models, size, batch_size, num_classes, repeats, warmup, device)
        ref_wall, ref_cpu = times[reference]
        for m in models:
            wall, cpu = times[m]
            rows.append(
                {
                    "model": m,
                    "img_size": size,
                    "img_per_s": round(batch_size / median(wall), 2),
                    "ms": round(1e3 * median(wall), 1),
                    "cpu_ms": round(1e3 * median(cpu), 1),
                    "speed_vs_ref": round(median([b / a for a, b in zip(wall, ref_wall)]), 3),
                    "cpu_speed_vs_ref": round(median([b / a for a, b in zip(cpu, ref_cpu)]), 3),
                    "reference": reference,
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
    """Markdown table of ``bench_finetune`` rows (speed ratio > 1: faster than the reference)."""
    ref = rows[0]["reference"] if rows else "?"
    lines = [
        f"| model | input | img/s | ms / step | speed x {ref} | speed x {ref} (CPU time) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['img_size']} | {r['img_per_s']:.1f} | {r['ms']:.0f} "
            f"| {r['speed_vs_ref']:.2f} | {r['cpu_speed_vs_ref']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="mlkd bench finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--img-sizes", nargs="+", type=int, default=[64, 96, 128])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per size (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--reference", default="resnet18")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: unchanged)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parse_args(parser, argv)
    rows = bench_finetune(
        args.models,
        args.img_sizes,
        args.batch_size,
        args.classes,
        args.repeats,
        args.warmup,
        args.reference,
        args.device,
    )
    return report(
        f"Fine-tuning step (train_step: label-wise head D=768, q={args.classes}, BCE, "
        f"backward, Adam), batch {args.batch_size}; median of {args.repeats} interleaved "
        f"rounds per size ({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
