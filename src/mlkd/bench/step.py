"""Training-step time by method, as ratios to the student trained alone with BCE.

``python -m mlkd.bench step [--teacher resnet34] [--student resnet18] [--img-size 64]
[--batch-size 64] [--classes 20] [--positives 2.9] [--methods ...] [--repeats 7] [--warmup 2]
[--threads T] [--device cpu] [--amp off] [--channels-last] [--json PATH]``

Each row times ``mlkd.engine.step.train_step``, the function ``fit`` runs for every batch:
batch to device, teacher outputs (a no-grad eval-mode teacher forward, or the teacher-output
cache for ``l2d+cache``), student forward + objective (``l2d+bounded``: with the bounded
weights of ``distill.balance`` measured every step), backward, optimiser and LR schedule
steps. ``vanilla`` is the student alone (BCE, no teacher). Every method has its own student
(same initial weights), objective (ReviewKD's fusion modules included) and Adam state, built by
the engine's builders. Defaults: ResNet-34 teacher -> ResNet-18 student with the paper's
label-wise head (D = 768), 64x64 inputs, batch 64, q = 20 classes (VOC's count) with 2.9
positive labels per image on average (COCO's density, the harder case for CD/ID: more pairs).
Rounds are interleaved (each round runs one step of every method, in turn, the order reversed
every other round), so a change in the machine's load hits every method alike and no method
always runs first (the first step of a round measured ~8% slower on this machine). The table
shows, over ``--repeats`` rounds after
``--warmup`` rounds, the median step time and the median of the per-round ratios to the
BCE-only step of the same round, for wall-clock time and for process CPU time (less sensitive
to other processes on a shared machine). On a small shared CPU, ``--threads 1`` gives steadier
figures.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from mlkd.bench.common import (
    METHODS,
    SyntheticImages,
    batches_of,
    bench_config,
    build_net,
    diagnostics_of,
    machine,
    make_run,
    median,
    parse_args,
    report,
    step_parser,
    timed,
)
from mlkd.engine.distributed import DistInfo
from mlkd.engine.runtime import resolve_precision
from mlkd.engine.step import NonFiniteGuard, defers_checks, train_step

log = logging.getLogger(__name__)


def build_teacher(name: str, cfg, num_classes: int, device: torch.device, seed: int = 1):
    """A frozen (eval mode, no gradients) randomly initialised teacher."""
    teacher = build_net(name, cfg, num_classes, device, seed).eval().requires_grad_(False)
    return teacher.to(memory_format=torch.channels_last) if cfg.train.channels_last else teacher


def build_cache(folder: Path, teacher, dataset, cfg, device):
    """A teacher-output cache of ``dataset`` (eval view) built by the engine's cache code."""
    from mlkd.engine import teacher_cache as tc

    precision = resolve_precision(cfg.train.amp, device)
    fp = tc.fingerprint(teacher, precision.dtype, dataset, "bench-synthetic", {}, "eval", 1, 0)
    return tc.build_cache(folder, teacher, dataset, fp, 1, DistInfo(), device, precision, cfg.data.batch_size, 0)


def bench_step(
    teacher: str = "resnet34",
    student: str = "resnet18",
    img_size: int = 64,
    batch_size: int = 64,
    num_classes: int = 20,
    positives: float = 2.9,
    methods: Sequence[str] = METHODS,
    repeats: int = 7,
    warmup: int = 2,
    device: str = "cpu",
    amp: str = "off",
    channels_last: bool = False,
    num_batches: int = 2,
    head: Optional[dict] = None,
) -> list[dict]:
    """One dict per method: median wall / CPU milliseconds per step and ratios to ``vanilla``
    (which is always timed). ``head``: model-section overrides for both networks (default: the
    paper's head). See the module docstring."""
    methods = list(dict.fromkeys(["vanilla", *methods]))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"bench step: unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    cfg = bench_config(student, img_size, batch_size, device, amp, channels_last, head)
    dev = torch.device(device)
    dataset = SyntheticImages(num_batches * batch_size, img_size, num_classes, positives)
    batches = batches_of(dataset, batch_size)
    teacher_net = build_teacher(teacher, cfg, num_classes, dev)
    with tempfile.TemporaryDirectory(prefix="mlkd-bench-step-") as tmp:
        cache = build_cache(Path(tmp) / "cache", teacher_net, dataset, cfg, dev) if "l2d+cache" in methods else None
        runs = {m: make_run(m, cfg, num_classes, teacher_net, cache) for m in methods}
        guards = {m: NonFiniteGuard(cfg.train.nonfinite, defers_checks(dev), run.optimizer) for m, run in runs.items()}
        diagnostics = {m: diagnostics_of(m, run) for m, run in runs.items()}
        wall: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}
        for r in range(warmup + repeats):
            batch = batches[r % len(batches)]
            order = methods if r % 2 == 0 else methods[::-1]  # no method always runs first
            for m in order:
                run = runs[m]
                w, c = timed(lambda run=run, batch=batch, m=m: train_step(run, batch, guards[m], diagnostics[m]), dev)
                if r >= warmup:
                    wall[m].append(w)
                    cpu[m].append(c)
        for m, run in runs.items():
            guards[m].check(run)
    rows = []
    for m in methods:
        rows.append(
            {
                "method": m,
                "teacher": "cache" if m == "l2d+cache" else ("-" if m == "vanilla" else teacher),
                "ms": round(1e3 * median(wall[m]), 2),
                "ratio": round(paired_ratio(wall, m, "vanilla"), 3),
                "cpu_ms": round(1e3 * median(cpu[m]), 2),
                "cpu_ratio": round(paired_ratio(cpu, m, "vanilla"), 3),
                "min_ms": round(1e3 * min(wall[m]), 2),
                "wall_s": wall[m],
                "cpu_s": cpu[m],
                "student": student,
                "img_size": img_size,
                "batch_size": batch_size,
                "classes": num_classes,
                "positives": positives,
                "repeats": repeats,
                "device": device,
                "amp": amp,
                "channels_last": channels_last,
                "threads": torch.get_num_threads(),
            }
        )
    return rows


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) in the same round (load drifts cancel)."""
    return median([x / y for x, y in zip(times[a], times[b])])


def _ratio(rows: Sequence[dict], a: str, b: str, key: str = "wall_s") -> Optional[float]:
    by = {r["method"]: r for r in rows}
    if a in by and b in by:
        return paired_ratio({a: by[a][key], b: by[b][key]}, a, b)
    return None


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of ``bench_step`` rows, then the two headline ratios (medians
    of per-round ratios)."""
    lines = [
        "| method | teacher | step ms (median) | x BCE-only | CPU ms | x BCE-only (CPU) | min ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['teacher']} | {r['ms']:.1f} | {r['ratio']:.3f} "
            f"| {r['cpu_ms']:.1f} | {r['cpu_ratio']:.3f} | {r['min_ms']:.1f} |"
        )
    notes = []
    for a, b, label in (
        ("l2d", "mld", "L2D step / MLD step"),
        ("l2d+cache", "vanilla", "L2D step with the teacher cache / BCE-only step"),
        (
            "l2d+diagnostics",
            "l2d",
            "L2D step measured by the term diagnostics / L2D step (a run measures one step in train.diagnostics_every)",
        ),
        (
            "l2d+bounded",
            "l2d",
            "L2D step with bounded weights measured every step / L2D step (distill.balance_every sets how often)",
        ),
    ):
        wall, cpu = _ratio(rows, a, b), _ratio(rows, a, b, "cpu_s")
        if wall is not None:
            notes.append(f"- {label}: {wall:.3f} (wall), {cpu:.3f} (CPU time)")
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    parser = step_parser("mlkd bench step", __doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    args = parse_args(parser, argv)
    rows = bench_step(
        args.teacher,
        args.student,
        args.img_size,
        args.batch_size,
        args.classes,
        args.positives,
        args.methods,
        args.repeats,
        args.warmup,
        args.device,
        args.amp,
        args.channels_last,
    )
    return report(
        f"Training step (train_step: forward + backward + Adam + schedule), teacher "
        f"{args.teacher} -> student {args.student}, {args.img_size}x{args.img_size}, batch "
        f"{args.batch_size}, q={args.classes}, {args.positives} positives/image, amp "
        f"{args.amp}{', channels_last' if args.channels_last else ''}; median of "
        f"{args.repeats} interleaved rounds ({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
