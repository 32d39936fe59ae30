"""Peak memory of one distillation step by method (the step benchmark's setup).

``python -m mlkd.bench memory [--teacher resnet34] [--student resnet18] [--img-size 64]
[--batch-size 64] [--classes 20] [--positives 2.9] [--methods ...] [--device cpu] [--json PATH]``

For each method (built one at a time: student, objective, Adam, as ``fit`` builds them) one
warm-up ``train_step`` creates the gradients and Adam's state, then one measured step reports:

- ``resident``: bytes of the tensors that live across steps: student + objective parameters
  and buffers, Adam's state, and the teacher's parameters and buffers when the method runs the
  teacher (the cache's memory-mapped files are on disk / in the page cache, not counted);
- ``step peak``: the most bytes the step allocates on top of that (gradients, activations,
  the teacher's outputs, autograd buffers, temporaries). ``train_step`` frees the last step's
  gradients first, so they are not counted twice.

How the step peak is measured. CUDA: ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus ``memory_allocated`` at the start. CPU: ``torch.profiler``
with ``profile_memory=True`` records every allocation and free made through torch's CPU
allocator, with its time; the peak of the running sum over the step is the step peak. This
counts torch tensors exactly (tracemalloc sees none of them; the process's RSS also holds the
allocator's cached pages, libraries and Python objects, so its high-water mark would blur the
differences between methods); it does not see memory that libraries allocate outside torch's
allocator (oneDNN scratch pads), which is small next to the activations.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch

from mlkd.bench.common import (
    METHODS,
    SyntheticImages,
    batches_of,
    bench_config,
    diagnostics_of,
    machine,
    make_run,
    parse_args,
    report,
    step_parser,
)
from mlkd.bench.step import build_cache, build_teacher
from mlkd.engine.step import NonFiniteGuard, defers_checks, train_step

MiB = 2**20


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def resident_bytes(run) -> int:
    """Parameters, buffers and optimiser state of the run (+ the teacher's parameters)."""
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    state = [v for s in run.optimizer.state.values() for v in s.values()]
    teacher = list(run.teacher.parameters()) + list(run.teacher.buffers()) if run.teacher is not None else []
    return _tensor_bytes(params + state + teacher + list(run.step.buffers()))


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """The most bytes ``fn`` has allocated at once above what was alive when it started."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        if event.device_type() == torch.autograd.DeviceType.CPU:
            current += event.nbytes()
            peak = max(peak, current)
    return peak


def bench_memory(
    teacher: str = "resnet34",
    student: str = "resnet18",
    img_size: int = 64,
    batch_size: int = 64,
    num_classes: int = 20,
    positives: float = 2.9,
    methods: Sequence[str] = METHODS,
    device: str = "cpu",
    amp: str = "off",
    channels_last: bool = False,
    head: dict | None = None,
) -> list[dict]:
    """One dict per method: resident and step-peak MiB (see the module docstring)."""
    cfg = bench_config(student, img_size, batch_size, device, amp, channels_last, head)
    dev = torch.device(device)
    dataset = SyntheticImages(2 * batch_size, img_size, num_classes, positives)
    batches = batches_of(dataset, batch_size)
    teacher_net = build_teacher(teacher, cfg, num_classes, dev)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlkd-bench-memory-") as tmp:
        cache = build_cache(Path(tmp) / "cache", teacher_net, dataset, cfg, dev) if "l2d+cache" in methods else None
        for method in methods:
            run = make_run(method, cfg, num_classes, teacher_net, cache)
            guard = NonFiniteGuard(cfg.train.nonfinite, defers_checks(dev), run.optimizer)
            train_step(run, batches[0], guard, diagnostics_of(method, run))  # Adam's state exists from here on
            run.optimizer.zero_grad(set_to_none=True)  # what the step does first, outside the profile
            resident = resident_bytes(run)
            peak = peak_bytes(
                lambda run=run, guard=guard, method=method: train_step(
                    run, batches[1], guard, diagnostics_of(method, run)
                ),
                dev,
            )
            rows.append(
                {
                    "method": method,
                    "teacher": "cache" if method == "l2d+cache" else ("-" if method == "vanilla" else teacher),
                    "resident_mib": round(resident / MiB, 1),
                    "step_peak_mib": round(peak / MiB, 1),
                    "total_mib": round((resident + peak) / MiB, 1),
                    "student": student,
                    "img_size": img_size,
                    "batch_size": batch_size,
                    "classes": num_classes,
                    "device": device,
                    "amp": amp,
                }
            )
            del run, guard
    return rows


def format_table(rows: Sequence[dict]) -> str:
    base = {r["method"]: r for r in rows}.get("vanilla")
    lines = [
        "| method | teacher | resident MiB | step peak MiB | total MiB | step peak x BCE-only |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['step_peak_mib'] / base['step_peak_mib']:.2f}" if base and base["step_peak_mib"] else "-"
        lines.append(
            f"| {r['method']} | {r['teacher']} | {r['resident_mib']:.1f} | {r['step_peak_mib']:.1f} "
            f"| {r['total_mib']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = step_parser("mlkd bench memory", __doc__.splitlines()[0])
    args = parse_args(parser, argv)
    rows = bench_memory(
        args.teacher,
        args.student,
        args.img_size,
        args.batch_size,
        args.classes,
        args.positives,
        args.methods,
        args.device,
        args.amp,
        args.channels_last,
    )
    how = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "torch.profiler allocation timeline"
    return report(
        f"Memory of one training step, teacher {args.teacher} -> student {args.student}, "
        f"{args.img_size}x{args.img_size}, batch {args.batch_size}, q={args.classes}, amp "
        f"{args.amp}; step peak by {how} ({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
