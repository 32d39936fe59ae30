"""``mlkd export``: a run folder or checkpoint to an ONNX file or a safetensors folder.

TorchScript is not offered: ``torch.jit`` is deprecated in current torch, and tracing records
Python branches taken on tensor values, so a trace is not guaranteed to hold at other batch
sizes; ONNX (run by ONNX Runtime) is the portable inference format.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from mlkd.errors import ConfigError
from mlkd.export.parity import LOGIT_TOLERANCE

log = logging.getLogger("mlkd")

FORMATS = ("onnx", "safetensors")


def default_output(path: str | Path, fmt: str) -> Path:
    """``RUN/export/model.onnx`` or ``RUN/export/safetensors/`` (RUN: the run folder, or the
    checkpoint file's folder)."""
    path = Path(path)
    run = path if path.is_dir() else (path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    return run / "export" / ("model.onnx" if fmt == "onnx" else "safetensors")


def export(
    path: str | Path,
    fmt: str = "onnx",
    out: Optional[str | Path] = None,
    tolerance: Optional[float] = None,
    check_map: bool = False,
    map_limit: Optional[int] = None,
) -> dict:
    """Export the model of ``path`` (a run folder or checkpoint) as ``fmt``; returns the report
    (path, parity: max abs logit / probability differences, and with ``check_map`` the
    test-split mAP of both). Raises ExportError and writes nothing when parity fails."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from mlkd.export.source import load_student

    student = load_student(path)
    out = Path(out) if out else default_output(path, fmt)
    if fmt == "onnx":
        from mlkd.export.onnx_export import export_onnx

        report = export_onnx(
            student, out, tolerance if tolerance is not None else LOGIT_TOLERANCE, check_map, map_limit
        )
    else:
        from mlkd.export.parity import map_parity
        from mlkd.export.weights import export_safetensors, load_safetensors, torch_outputs_of

        report = export_safetensors(student, out, tolerance if tolerance is not None else 1e-5)
        if check_map:
            rebuilt, _ = load_safetensors(out)
            report["test_map"] = map_parity(student, lambda images: torch_outputs_of(rebuilt, images), map_limit)
    report.update(classes=len(student.classes), img_size=student.img_size, thresholds=student.threshold_source)
    log.info(
        "exported %s to %s (max |logit diff| %.3g)", student.checkpoint, report["path"], report["max_abs_logit_diff"]
    )
    return report
