"""The run itself: measure, size, draw the scenes, train the grid's four runs, report.

Order: the test split is drawn first (its time gives the drawing rate), then a prefix of the
training split for timing the loader, then the training steps are timed
(:mod:`.measure`); :func:`.sizing.plan_sizes` picks the scenes and epochs; the training split
is drawn; ``mlkd sweep`` trains the teacher, the students are sized again from the teacher's
measured time (:func:`.sizing.plan_students`), and the sweep trains them. The grid file
(``configs/study/paper_scenes.yaml``) holds the recipe; the driver adds only sizes, paths,
device, precision, memory format, workers and the diagnostics interval, as overrides.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

from mlkd.engine.trainer import fit
from mlkd.errors import ConfigError
from mlkd.reproduce.grid import Grid, load_grid
from mlkd.reproduce.paper_scenes import measure
from mlkd.reproduce.paper_scenes.generate import ensure_split
from mlkd.reproduce.paper_scenes.pack import check_device_pack
from mlkd.reproduce.paper_scenes.report import collect, copy_records, write_outputs
from mlkd.reproduce.paper_scenes.sizing import Measured, Plan, Scale, describe, plan_sizes, plan_students
from mlkd.reproduce.sweep import run_sweep

log = logging.getLogger(__name__)

GRID = Path("configs/study/paper_scenes.yaml")


def machine_cpus(limit: int = 16) -> int:
    """CPUs this process may use (its affinity), at most ``limit`` (a container's quota is not
    always visible in the affinity)."""
    return max(1, min(len(os.sched_getaffinity(0)), limit))


def full_scale(cpus: int) -> Scale:
    """The GPU run: 224 px, batch 64, 10,000 test scenes, >= 20,000 training scenes, 9 minutes."""
    return Scale(
        img_size=224,
        batch_size=64,
        num_test=10_000,
        min_train=20_000,
        max_train=30_137,
        max_epochs=80,
        budget_s=540.0,
        reserve_s=30.0,
        run_overhead_s=15.0,
        epoch_overhead_s=1.5,
        device="cuda",
        amp="bf16",
        workers=max(2, cpus - 2),
        threads=4,
        processes=cpus,
        diagnostics_every=20,
        probe_scenes=4096,
    )


def smoke_scale() -> Scale:
    """The CPU smoke run: the same steps at toy size (32 px, a few dozen scenes, fp32)."""
    return Scale(
        img_size=32,
        batch_size=8,
        num_test=24,
        min_train=32,
        max_train=64,
        max_epochs=2,
        budget_s=30.0,
        reserve_s=3.0,
        run_overhead_s=2.0,
        epoch_overhead_s=0.1,
        device="cpu",
        amp="off",
        workers=0,
        threads=1,
        processes=2,
        diagnostics_every=1,
        probe_scenes=32,
        bench_repeats=1,
        bench_warmup=1,
    )


def overrides(
    scale: Scale,
    glyphs: Path,
    cache: Path,
    num_train: int,
    teacher_epochs: int,
    student_epochs: int,
    channels_last: bool,
) -> list[str]:
    """The grid overrides of one sizing (everything else comes from the grid file)."""
    return [
        f"data.options.num_train={num_train}",
        f"data.options.num_test={scale.num_test}",
        f"data.options.glyph_pack={glyphs}",
        f"data.options.cache_dir={cache}",
        f"data.img_size={scale.img_size}",
        f"data.batch_size={scale.batch_size}",
        f"data.num_workers={scale.workers}",
        f"optim.epochs={student_epochs}",
        f"teacher_config.optim.epochs={teacher_epochs}",
        f"train.device={scale.device}",
        f"train.amp={scale.amp}",
        f"train.channels_last={str(channels_last).lower()}",
        f"train.diagnostics_every={scale.diagnostics_every}",
        "train.progress=off",
        f"train.threads={scale.threads}",
        f"dataset=coco-scenes-{scale.img_size}",
    ]


def _options(grid: Grid, img_size: int) -> dict:
    """The dataset options of the grid's runs, with the canvas size the loader passes; a
    ConfigError unless the grid trains its teacher first on coco_scenes."""
    data = grid.runs[0].config.data
    if data.name != "coco_scenes" or grid.runs[0].role != "teacher" or len(grid.pairs) != 1:
        raise ConfigError(
            f"{grid.path}: expected one teacher -> student pair on data.name coco_scenes, "
            f"the teacher's run first (methods: [teacher, ...]); got {data.name!r}, "
            f"first run {grid.runs[0].role}, {len(grid.pairs)} pairs"
        )
    return {**data.options, "img_size": img_size}


def measure_all(grid_path: Path, scale: Scale, glyphs: Path, cache: Path) -> Measured:
    """Draw the test split and a training prefix, time the loader and the steps."""
    probe = load_grid(grid_path, overrides(scale, glyphs, cache, scale.probe_scenes, 1, 1, False))
    options = _options(probe, scale.img_size)
    drawn = []
    for split in ("test", "train"):
        _, seconds, new = ensure_split(split, options, scale.processes)
        if new:
            drawn.append(seconds / options[f"num_{split}"])
    loader_s = measure.measure_loader(probe.runs[0].config.data, batches=4 * max(1, scale.workers))
    pair = probe.pairs[0]
    channels_last, cl_times = measure.choose_channels_last(pair.student, scale)
    step_s = measure.measure_steps(pair.teacher, pair.student, scale, channels_last)
    notes = {
        "channels_last_step_s": cl_times,
        "teacher": pair.teacher,
        "student": pair.student,
        **measure.machine_notes(scale.device),
    }
    return Measured(max(drawn, default=0.0), loader_s, step_s, channels_last, notes)


def _timed_fit(times: dict, runs: Path, out: Path) -> Callable[..., dict]:
    """``fit`` that records its wall seconds in ``times[run_dir]`` and copies the run's records
    (not its checkpoints) to ``out/runs/<run folder under runs>`` as soon as it ends."""

    def fit_fn(cfg, resume: bool = False) -> dict:
        start = time.perf_counter()
        try:
            return fit(cfg, resume=resume)
        finally:
            times[cfg.run_dir] = time.perf_counter() - start
            copy_records(Path(cfg.run_dir), out / "runs" / Path(cfg.run_dir).relative_to(runs))

    return fit_fn


def _sweep(grid_path: Path, args: list[str], runs: Path, out: Path, times: dict, max_runs: Optional[int]) -> Grid:
    grid = load_grid(grid_path, args, out=runs)
    report = run_sweep(grid, max_runs=max_runs, fit_fn=_timed_fit(times, runs, out))
    log.info("%s", report.summary())
    return grid


def run_paper_scenes(
    pack: Path,
    out: Path,
    work: Path,
    scale: Scale,
    started_at: float,
    grid_path: Path = GRID,
    say: Callable[[str], None] = log.info,
) -> dict:
    """Everything, within ``scale.budget_s`` seconds of ``started_at`` (``time.time()``);
    writes the table and summary under ``out`` and returns the summary. ``say`` receives the
    sizing lines as they are decided."""
    deadline = started_at + scale.budget_s
    glyphs, cache = check_device_pack(pack).resolve(), (work / "scenes").resolve()
    out.mkdir(parents=True, exist_ok=True)
    m = measure_all(grid_path, scale, glyphs, cache)
    plan = plan_sizes(deadline - time.time() - scale.reserve_s, m, scale)
    say(describe(plan, m, scale))
    (out / "sizing.json").write_text(json.dumps({"plan": plan.to_dict(), "measured": m.__dict__}, indent=1))
    runs, times = (work / f"runs-{int(started_at)}").resolve(), {}

    def args(p: Plan) -> list[str]:
        return overrides(scale, glyphs, cache, p.num_train, p.teacher_epochs, p.student_epochs, m.channels_last)

    ensure_split("train", _options(load_grid(grid_path, args(plan)), scale.img_size), scale.processes)
    grid = _sweep(grid_path, args(plan), runs, out, times, max_runs=1)  # the teacher
    teacher = str(grid.runs[0].run_dir)
    ratio = times[teacher] / plan.predicted_s["teacher"]
    final = plan_students(deadline - time.time() - scale.reserve_s, plan, m, scale, ratio)
    say(
        f"sizing (students, after the teacher: {times[teacher]:.0f} s measured, "
        f"{plan.predicted_s['teacher']:.0f} s predicted, x{ratio:.2f}): epochs: students "
        f"{final.student_epochs}{'' if final.fits else ' (OVER BUDGET: one epoch does not fit)'}"
    )
    grid = _sweep(grid_path, args(final), runs, out, times, max_runs=None)
    summary = collect(
        grid,
        times,
        {"first": plan.to_dict(), "final": final.to_dict(), "ratio": ratio},
        m,
        scale,
        time.time() - started_at,
    )
    write_outputs(out, summary)
    return summary
