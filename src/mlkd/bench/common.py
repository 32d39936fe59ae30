"""Shared pieces of the step / memory / eval benchmarks: synthetic data, runs built from the
engine's own parts (so the benchmarks time the code ``fit`` runs), timing helpers."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mlkd.config import Config
from mlkd.data.batch import collate
from mlkd.engine.assembly import Run, assemble
from mlkd.engine.diagnostics import TermDiagnostics
from mlkd.engine.runtime import resolve_precision

#: Methods of the step and memory benchmarks; "l2d+cache" is L2D served by the teacher cache,
#: "l2d+diagnostics" L2D with the term diagnostics measuring every step (``train.diagnostics_every`` 1),
#: "l2d+bounded" L2D with bounded term weights measured every step (``distill.balance`` bounded).
METHODS = (
    "vanilla",
    "rkd",
    "pkt",
    "reviewkd",
    "mse",
    "ps",
    "mld",
    "l2d",
    "l2d+cache",
    "l2d+diagnostics",
    "l2d+bounded",
)


class SyntheticImages(Dataset):
    """N random images [3, S, S] in [0, 1] with targets drawn so that each image has
    ``positives`` labels on average (Bernoulli(positives / q) per class, at least one)."""

    def __init__(self, num: int, img_size: int, num_classes: int, positives: float, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(num, 3, img_size, img_size, generator=g)
        targets = torch.rand(num, num_classes, generator=g) < positives / num_classes
        targets[torch.arange(num), torch.randint(num_classes, (num,), generator=g)] = True
        self.targets = targets.float()
        self.classes = [f"c{k}" for k in range(num_classes)]
        self.transform = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i], i

    def labels_matrix(self) -> np.ndarray:
        return self.targets.numpy().astype(np.uint8)


def batches_of(dataset: Dataset, batch_size: int) -> list[dict]:
    """The dataset as consecutive collated batches (the last partial one dropped)."""
    n = len(dataset) // batch_size
    return [collate([dataset[i] for i in range(k * batch_size, (k + 1) * batch_size)]) for k in range(n)]


def bench_config(
    student: str,
    img_size: int,
    batch_size: int,
    device: str,
    amp: str,
    channels_last: bool,
    head: Optional[dict] = None,
    compile: bool = False,
) -> Config:
    """A Config for the benchmarks; ``head``: model-section overrides (embed_dim, ffn_dim, ...;
    default: the paper's label-wise head); ``compile``: ``train.compile``."""
    return Config.model_validate(
        {
            "data": {"img_size": img_size, "batch_size": batch_size},
            "model": {"name": student, **(head or {})},
            "train": {"device": device, "amp": amp, "channels_last": channels_last, "compile": compile},
        }
    )


def build_net(name: str, cfg: Config, num_classes: int, device: torch.device, seed: int) -> nn.Module:
    """A network named ``name`` with the config's head settings, by the engine's builder."""
    from mlkd.engine.builders import model_from_config

    torch.manual_seed(seed)
    model = model_from_config(cfg.model.model_copy(update={"name": name}), num_classes, pretrained=False)
    return model.to(device)


def make_run(
    method: str, cfg: Config, num_classes: int, teacher: Optional[nn.Module], cache=None, seed: int = 0
) -> Run:
    """A Run for ``method`` (a METHODS name) with a freshly initialised student (same seed for
    every method), assembled as ``fit`` assembles its runs (``mlkd.engine.assembly.assemble``:
    objective, step, optimiser, schedule, scaler); ``l2d+cache`` is L2D served by ``cache``,
    ``l2d+bounded`` L2D under ``distill.balance: bounded``."""
    device = torch.device(cfg.train.device)
    precision = resolve_precision(cfg.train.amp, device)
    student = build_net(cfg.model.name, cfg, num_classes, device, seed)
    name = method.split("+")[0]
    balance = "bounded" if method == "l2d+bounded" else cfg.distill.balance
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"method": name, "balance": balance})})
    return assemble(
        cfg,
        student,
        teacher,
        [f"c{k}" for k in range(num_classes)],
        device=device,
        precision=precision,
        cache=cache if method == "l2d+cache" else None,
        steps_per_epoch=10_000,
    )


def diagnostics_of(method: str, run: Run) -> Optional[TermDiagnostics]:
    """The TermDiagnostics that measures every step of ``l2d+diagnostics`` (None for the others)."""
    if method != "l2d+diagnostics":
        return None
    return TermDiagnostics(1, run.cfg.train.diagnostics_warn_ratio, run.step.objective.weights)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``, device synchronised."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def machine(device: str) -> str:
    return (
        f"{device}, {platform.machine() or '?'}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}"
    )


def write_json(path: Optional[Path], payload) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))


def report(header: str, table: str, rows, json_path: Optional[Path]) -> int:
    """Print a benchmark's header line and Markdown table; write its rows as JSON if asked."""
    sys.stdout.write(f"{header}\n\n{table}\n")
    write_json(json_path, rows)
    return 0


def parse_args(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parse a benchmark's arguments and apply ``--threads`` (torch intra-op threads) if given."""
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return args


def step_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments shared by the step-shaped benchmarks (step, memory)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--teacher", default="resnet34")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--positives", type=float, default=2.9, help="mean positive labels per image")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: unchanged)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "auto", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return parser


def interleaved_rounds(
    runs: dict, batches: Sequence[dict], repeats: int, warmup: int, device: torch.device
) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (wall seconds, CPU seconds) of each timed ``train_step`` round: every round runs
    one step of every run in turn (the order reversed every other round, so none always runs
    first), cycling through ``batches``; the ``warmup`` rounds first are not kept."""
    from mlkd.engine.step import NonFiniteGuard, defers_checks, train_step

    guards = {m: NonFiniteGuard(r.cfg.train.nonfinite, defers_checks(device), r.optimizer) for m, r in runs.items()}
    names = list(runs)
    times: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in names}
    for r in range(warmup + repeats):
        for m in names if r % 2 == 0 else names[::-1]:
            w, c = timed(lambda m=m, r=r: train_step(runs[m], batches[r % len(batches)], guards[m]), device)
            if r >= warmup:
                times[m][0].append(w)
                times[m][1].append(c)
    for m, run in runs.items():
        guards[m].check(run)
    return times
