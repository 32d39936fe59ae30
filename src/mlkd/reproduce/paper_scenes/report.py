"""The paper-scale scenes report: the table (Teacher / Student / MLD / L2D at thr@0.5), each
student's final-epoch term diagnostics, the sizing and the times, as Markdown and JSON.

Numbers come from each run's last ``metrics.jsonl`` record (the last epoch, evaluated once on
the test split): ``eval["thr@0.5"]`` for mAP / OF1 / CF1 (shown x 100), ``diagnostics`` for the
gradient ratios to BCE (``terms[term]["ratio"]``: the median over the epoch's measured steps)
and the label-embedding geometry.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path

from mlkd.reproduce.grid import Grid
from mlkd.reproduce.paper_scenes.sizing import Measured, Scale
from mlkd.runrecord import EXPERIMENT_FILE, METRICS_FILE, RunRecord

PROTOCOL = "thr@0.5"
METRICS = ("mAP", "OF1", "CF1")
TERMS = ("mld", "cd", "id")
GEOMETRY = ("student_cd", "student_id", "teacher_cd", "teacher_id")
MARKDOWN, SUMMARY = "paper_scenes.md", "paper_scenes.json"


def role(method: str) -> str:
    """The sizing role of a grid method: teacher, student (vanilla), mld, l2d."""
    return {"vanilla": "student"}.get(method, method)


def _row(label: str, spec, root: Path, times: dict, predicted: dict) -> tuple[dict, dict | None]:
    """(table row, diagnostics entry or None) of one run's last record; ``records``: where
    the run's records are copied under the output folder (runs/<path under ``root``>)."""
    record = RunRecord.last(spec.run_dir)
    if record is None or not record.eval or PROTOCOL not in record.eval:
        raise ValueError(f"{spec.run_dir}: no evaluated last epoch in {METRICS_FILE}")
    scores = record.eval[PROTOCOL]
    row = {
        "row": label,
        "model": spec.model,
        "epochs": record.epoch,
        "protocol": PROTOCOL,
        **{k: 100 * scores[k] for k in METRICS},
        "seconds": times.get(str(spec.run_dir)),
        "predicted_s": predicted.get("teacher" if spec.role == "teacher" else role(spec.method)),
        "run_dir": str(spec.run_dir),
        "records": f"runs/{spec.run_dir.relative_to(root)}",
    }
    diag = record.fields.get("diagnostics")
    if spec.role == "teacher" or not diag:
        return row, None
    terms = diag.get("terms") or {}
    entry = {
        "epoch": record.epoch,
        "steps": diag.get("steps"),
        "ratios": {t: terms[t].get("ratio") for t in TERMS if t in terms},
        "weights": {t: terms[t].get("weight") for t in TERMS if t in terms},
        "geometry": dict(diag.get("geometry") or {}),
    }
    return row, entry


def collect(grid: Grid, times: dict, sizing: dict, m: Measured, scale: Scale, elapsed_s: float) -> dict:
    """The summary: rows in the grid's order, student diagnostics, sizing, measurements."""
    pair, seed = grid.pairs[0], grid.seeds[0]
    rows, diagnostics = [], {}
    for method in grid.methods:
        spec = grid.run_for(pair, method, seed)
        row, entry = _row(method.label, spec, grid.out, times, sizing["final"]["predicted_s"])
        rows.append(row)
        if entry is not None:
            diagnostics[method.label] = entry
    data = grid.runs[0].config.data
    return {
        "dataset": {
            "name": data.name,
            "num_train": data.options["num_train"],
            "num_test": data.options["num_test"],
            "img_size": data.img_size,
            "split_evaluated": "test",
        },
        "pair": {"teacher": pair.teacher, "student": pair.student},
        "seed": seed,
        "grid": str(grid.path),
        "rows": rows,
        "diagnostics": diagnostics,
        "sizing": sizing,
        "measured": m.__dict__,
        "scale": asdict(scale),
        "elapsed_s": elapsed_s,
    }


def _num(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"


def markdown(summary: dict) -> str:
    """The report as Markdown."""
    d, final = summary["dataset"], summary["sizing"]["final"]
    lines = [
        f"# coco_scenes at paper scale: {summary['pair']['teacher']} -> {summary['pair']['student']}",
        "",
        f"Synthetic art: the real COCO 2014 label sets drawn as emoji scenes ({d['name']}), "
        f"{d['num_train']} training / {d['num_test']} test scenes at {d['img_size']} px; the official "
        f"recipe ({summary['grid']}); seed {summary['seed']}; the last epoch, evaluated once on the test "
        f"split (nothing is chosen on it). Epochs (sized to the time budget): teacher "
        f"{final['teacher_epochs']}, students {final['student_epochs']}.",
        "",
        "| row | model | epochs | mAP | OF1 | CF1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        lines.append(f"| {r['row']} | {r['model']} | {r['epochs']} | " + " | ".join(_num(r[k]) for k in METRICS) + " |")
    lines += [
        "",
        f"F1 under {PROTOCOL}. Final-epoch term diagnostics: gradient ratio to BCE on the outputs each "
        "term reads (median over the epoch's measured steps), label-embedding geometry (mean distance "
        "within class groups `cd` / image groups `id`, over the mean embedding norm).",
        "",
        "| row | epoch | λ | " + " | ".join(f"{t.upper()} / BCE" for t in TERMS) + " | " + " | ".join(GEOMETRY) + " |",
        "|---|---:|---|" + "---:|" * (len(TERMS) + len(GEOMETRY)),
    ]
    for label, e in summary["diagnostics"].items():
        weights = ", ".join(f"{t.upper()} {w:g}" for t, w in e["weights"].items()) or "–"
        lines.append(
            f"| {label} | {e['epoch']} | {weights} | "
            + " | ".join(_num(e["ratios"].get(t), 3) for t in TERMS)
            + " | "
            + " | ".join(_num(e["geometry"].get(g), 3) for g in GEOMETRY)
            + " |"
        )
    lines += ["", "| run | predicted s | measured s |", "|---|---:|---:|"]
    lines += [f"| {r['row']} | {_num(r['predicted_s'], 0)} | {_num(r['seconds'], 0)} |" for r in summary["rows"]]
    lines += ["", f"Whole command: {summary['elapsed_s']:.0f} s of a {summary['scale']['budget_s']:.0f} s budget."]
    return "\n".join(lines) + "\n"


def copy_records(run_dir: Path, target: Path) -> None:
    """Copy a run folder's metrics.jsonl, config.yaml and experiment.json (no checkpoints)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in (METRICS_FILE, "config.yaml", EXPERIMENT_FILE):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, target / name)


def write_outputs(out: Path, summary: dict) -> None:
    """``out``/paper_scenes.md (the report) and paper_scenes.json (the summary)."""
    (out / MARKDOWN).write_text(markdown(summary))
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
