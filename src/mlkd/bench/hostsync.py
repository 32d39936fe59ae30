"""Host synchronisations in the training step, per method (for CUDA).

``python -m mlkd.bench hostsync --device cuda --amp bf16 [--steps 3] [step options]``

After warm-up steps, runs ``mlkd.engine.step.train_step`` for every method under
``torch.cuda.set_sync_debug_mode("error")``: any operation that makes the host wait for the
device (``.item()``, ``nonzero``, a device-to-host copy, ...) raises, and the row names the
method and the first such operation. Batches are pinned, as the DataLoader pins them on CUDA.
The non-finite flags are read once after the checked steps, as ``fit`` reads them every
``train.log_interval`` steps. On CPU there is nothing to check: the steps run and the rows say so.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Optional, Sequence

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


def _sync_errors(device: torch.device):
    """The context that turns host syncs into errors on ``device`` (none on CPU)."""
    if device.type != "cuda":
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def errors():
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    return errors()


def check_host_syncs(
    teacher: str = "resnet34",
    student: str = "resnet18",
    img_size: int = 64,
    batch_size: int = 64,
    num_classes: int = 20,
    positives: float = 2.9,
    methods: Sequence[str] = METHODS,
    steps: int = 3,
    warmup: int = 2,
    device: str = "cpu",
    amp: str = "off",
    channels_last: bool = False,
    head: Optional[dict] = None,
) -> list[dict]:
    """One row per method: {"method", "checked", "steps", "syncs": "none" | first error line}.
    ``head``: model-section overrides for both networks (default: the paper's head)."""
    cfg = bench_config(student, img_size, batch_size, device, amp, channels_last, head)
    dev = torch.device(device)
    dataset = SyntheticImages(2 * batch_size, img_size, num_classes, positives)
    batches = batches_of(dataset, batch_size)
    if dev.type == "cuda":
        batches = [{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
    teacher_net = build_teacher(teacher, cfg, num_classes, dev)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlkd-bench-hostsync-") as tmp:
        cache = build_cache(Path(tmp) / "cache", teacher_net, dataset, cfg, dev) if "l2d+cache" in methods else None
        for method in dict.fromkeys(methods):
            run = make_run(method, cfg, num_classes, teacher_net, cache)
            guard = NonFiniteGuard(cfg.train.nonfinite, defers_checks(dev), run.optimizer)
            for k in range(warmup):
                train_step(run, batches[k % len(batches)], guard, diagnostics_of(method, run))
            found = "none"
            try:
                with _sync_errors(dev):
                    for k in range(steps):
                        train_step(run, batches[k % len(batches)], guard, diagnostics_of(method, run))
            except RuntimeError as err:
                found = " ".join(str(err).split())[:200]
            guard.check(run)
            rows.append(
                {
                    "method": method,
                    "checked": dev.type == "cuda",
                    "steps": steps,
                    "syncs": found,
                    "device": device,
                    "amp": amp,
                    "deferred_checks": defers_checks(dev),
                }
            )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    lines = ["| method | steps checked | host syncs |", "|---|---:|---|"]
    for r in rows:
        verdict = r["syncs"] if r["checked"] else f"not checked on {r['device']} (nothing to sync)"
        lines.append(f"| {r['method']} | {r['steps']} | {verdict} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = step_parser("mlkd bench hostsync", __doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps checked per method")
    parser.add_argument("--warmup", type=int, default=2, help="steps first, unchecked (allocations, autotuning)")
    args = parse_args(parser, argv)
    rows = check_host_syncs(
        args.teacher,
        args.student,
        args.img_size,
        args.batch_size,
        args.classes,
        args.positives,
        args.methods,
        args.steps,
        args.warmup,
        args.device,
        args.amp,
        args.channels_last,
    )
    status = report(
        f"Host syncs in train_step under torch.cuda.set_sync_debug_mode('error'), teacher "
        f"{args.teacher} -> student {args.student}, {args.img_size}x{args.img_size}, batch "
        f"{args.batch_size}, amp {args.amp} ({machine(args.device)})",
        format_table(rows),
        rows,
        args.json,
    )
    return status or int(any(r["checked"] and r["syncs"] != "none" for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
