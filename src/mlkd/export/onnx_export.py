"""ONNX export with torch's exporter (``torch.onnx.export(dynamo=True)``), checked by ONNX Runtime.

The graph takes ``images`` float32 [batch, 3, S, S] (RGB in [0, 1], batch dynamic) and returns
``logits`` and ``probabilities`` [batch, q]. Opset ``OPSET`` (20) is the exporter's default and
runs on ONNX Runtime >= 1.17. The model's metadata_props carry the class names, the per-label
thresholds, the input size and the measured parity (keys ``mlkd.*``, JSON strings: see
``METADATA``). The file is written only after ONNX Runtime reproduced the PyTorch logits on
the fixed batches (:mod:`mlkd.export.parity`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from mlkd import __version__
from mlkd.export.graph import describe_failure
from mlkd.export.parity import LOGIT_TOLERANCE, check_tolerance, fixed_batch_parity, map_parity
from mlkd.export.source import Student, fixed_batch
from mlkd.optional import optional_import

log = logging.getLogger("mlkd")

OPSET = 20
INPUT, OUTPUTS = "images", ("logits", "probabilities")
#: metadata_props keys (values are strings; lists and numbers as JSON).
METADATA = (
    "mlkd.classes",
    "mlkd.thresholds",
    "mlkd.thresholds_source",
    "mlkd.img_size",
    "mlkd.input",
    "mlkd.model",
    "mlkd.version",
    "mlkd.weights_sha256",
    "mlkd.parity",
)


def _need_onnx():
    for module in ("onnx", "onnxscript", "onnxruntime"):
        optional_import(module, extra="export", purpose="ONNX export")


def _quiet():
    """Silence the exporter's progress prints and warnings (an export reports its own summary)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # their log lines go to handlers set up earlier
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


def _to_onnx(module: torch.nn.Module, args: tuple, kwargs: dict | None = None, names: bool = False):
    from torch.export import Dim

    options = {}
    if names:
        options = dict(input_names=[INPUT], output_names=list(OUTPUTS), dynamic_shapes=({0: Dim("batch", min=1)},))
    with _quiet(), torch.no_grad():
        return torch.onnx.export(
            module, args, None, kwargs=kwargs or None, dynamo=True, opset_version=OPSET, verbose=False, **options
        )


def session(model_bytes: bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def runner(sess):
    """An ONNX Runtime session as a parity Runner (images -> logits, probabilities)."""

    def run(images: np.ndarray):
        logits, probs = sess.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(images, dtype=np.float32)})
        return logits, probs

    return run


def metadata(student: Student, parity: dict) -> dict[str, str]:
    size = student.img_size
    return {
        "mlkd.classes": json.dumps(student.classes),
        "mlkd.thresholds": json.dumps(student.thresholds),
        "mlkd.thresholds_source": student.threshold_source,
        "mlkd.img_size": json.dumps(size),
        "mlkd.input": f"{INPUT}: float32 [batch, 3, {size}, {size}], RGB in [0, 1] (resized to {size}x{size}); "
        "the graph normalises it",
        "mlkd.model": json.dumps(
            {**student.model_config, "epoch": student.epoch, "checkpoint": student.checkpoint.name}
        ),
        "mlkd.version": __version__,
        "mlkd.weights_sha256": student.weights_sha256,
        "mlkd.parity": json.dumps(parity),
    }


def export_onnx(
    student: Student,
    out: str | Path,
    tolerance: float = LOGIT_TOLERANCE,
    check_map: bool = False,
    map_limit: int | None = None,
) -> dict:
    """Export ``student`` to ``out`` (.onnx); returns the report (parity figures, opset, path).

    Refuses (ExportError, nothing written) when a part of the model cannot be exported (the
    message names it) or when ONNX Runtime's logits differ from PyTorch's by more than
    ``tolerance`` on the fixed batches, or (``check_map``) the test-split mAP by more than
    0.01 points.
    """
    _need_onnx()
    import onnx

    example = (fixed_batch(2, student.img_size),)
    try:
        program = _to_onnx(student.net, example, names=True)
    except Exception as err:  # noqa: BLE001 - the exporter raises many types
        raise describe_failure(student.net, example, lambda m, a, k: _to_onnx(m, a, k), err, "ONNX") from None
    proto = program.model_proto
    sess = session(proto.SerializeToString())
    parity = fixed_batch_parity(student, runner(sess))
    parity["tolerance"] = tolerance
    check_tolerance(parity, "ONNX", tolerance)
    if check_map:
        parity["test_map"] = map_parity(student, runner(sess), map_limit)
    del proto.metadata_props[:]
    for key, value in metadata(student, parity).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "mlkd", __version__
    onnx.checker.check_model(proto)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(proto.SerializeToString())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"format": "onnx", "path": str(out), "opset": opset, "bytes": out.stat().st_size, **parity}
