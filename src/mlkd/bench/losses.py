"""Speed of the fused CD/ID loss (``led_loss``, official variant) against the loop reference.

``python -m mlkd.bench losses [--repeats N] [--device cpu] [--threads T] [--json PATH]``
times forward + backward of ``led_loss`` and of ``mlkd.losses.reference.led_loss_loop`` (a
Python loop over classes and images) on the same random float32 inputs, each in its own
block of repeats after a warm-up, and reports the medians and the speed ratio, at COCO-like
(B=64, q=80, ~2.9 positives per image) and VOC-like (q=20, ~1.6 positives per image, B=16
and 256) shapes. On a small shared CPU, ``--threads 1`` gives steadier figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from mlkd.bench.common import machine, parse_args, report
from mlkd.losses import led_loss
from mlkd.losses.reference import led_loss_loop

# (B, q, D, mean positives per image)
SHAPES = ((64, 80, 768, 2.9), (16, 20, 768, 1.6), (256, 20, 768, 1.6))


def _inputs(B: int, q: int, D: int, per_image: float, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, q, D, generator=g).to(device).requires_grad_()
    teacher = torch.randn(B, q, D, generator=g).to(device)
    targets = (torch.rand(B, q, generator=g) < per_image / q).float().to(device)
    return student, teacher, targets


def _median_ms(fn: Callable, student, teacher, targets, repeats: int) -> tuple[float, Tensor]:
    """Median milliseconds of ``repeats`` forward + backward runs after one warm-up run
    (device synchronised), and the loss value."""
    times = []
    for i in range(repeats + 1):
        if student.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = fn(student, teacher, targets)
        loss.backward()
        if student.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
        student.grad = None
    return 1e3 * statistics.median(times), loss.detach()


def bench_losses(repeats: int = 7, device: str = "cpu", shapes: Sequence[tuple] | None = None) -> list[dict]:
    """One dict per shape (default ``SHAPES``, (B, q, D, positives per image)): B, q, D,
    positives/image, fast/loop median ms, speed-up, relative difference of the values.

    Each function is timed in its own block of repeats (steady state, as in a training loop
    that calls the same loss every step).
    """
    rows = []
    for B, q, D, per_image in SHAPES if shapes is None else shapes:
        s, t, y = _inputs(B, q, D, per_image, device)
        fast_ms, fast_value = _median_ms(led_loss, s, t, y, repeats)
        loop_ms, loop_value = _median_ms(led_loss_loop, s, t, y, repeats)
        rel = float((fast_value - loop_value).abs() / loop_value.abs().clamp(min=1e-12))
        rows.append(
            {
                "B": B,
                "q": q,
                "D": D,
                "positives_per_image": round(float(y.sum()) / B, 2),
                "fast_ms": round(fast_ms, 3),
                "loop_ms": round(loop_ms, 3),
                "speedup": round(loop_ms / fast_ms, 1),
                "rel_diff": rel,
                "device": device,
                "threads": torch.get_num_threads(),
                "repeats": repeats,
            }
        )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of ``bench_losses`` rows."""
    lines = [
        "| B | q | D | positives/image | led_loss ms | loop ms | speed-up | rel. diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['B']} | {r['q']} | {r['D']} | {r['positives_per_image']:.2f} "
            f"| {r['fast_ms']:.2f} | {r['loop_ms']:.1f} | {r['speedup']:.1f}x "
            f"| {r['rel_diff']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlkd bench losses", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per shape (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: unchanged)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parse_args(parser, argv)
    rows = bench_losses(args.repeats, args.device)
    return report(
        f"led_loss (official, fp32) forward + backward vs the loop reference, median "
        f"of {args.repeats} ({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
