"""Per-label decision thresholds chosen on a validation split, and their ``thresholds.json``.

``choose_thresholds(scores [N, q], targets [N, q])`` picks, for each label, the threshold that
maximises that label's F1 on the given images, predicting the label when ``score >= t`` (the
rule of ``thr@t`` in :mod:`mlkd.metrics`). Any t between a distinct score and the next lower one
gives the same predictions; the chosen t is their midpoint (the lowest score when nothing is
lower), and among cut-offs of equal F1 the highest t wins. A label with fewer than
``min_positives`` positives keeps the global rule (``default``, 0.5), and the rule used is
recorded per label (``"f1"`` or ``"default"``).

This module needs numpy only (no torch): the light prediction path reads the same file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS_FILE = "thresholds.json"
FORMAT = 1
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_POSITIVES = 5


@dataclass(frozen=True)
class ThresholdChoice:
    """thresholds [q] float64, rules [q] ("f1" | "default"), f1 [q] (each label's F1 at its
    threshold on the validation images), positives [q] (validation positives per label)."""

    thresholds: np.ndarray
    rules: list[str]
    f1: np.ndarray
    positives: np.ndarray


def _f1_at(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-label F1 [q] of predicting ``scores >= thresholds`` (0 when undefined)."""
    pred = scores >= thresholds[None, :]
    tp = (pred & targets).sum(0)
    denom = pred.sum(0) + targets.sum(0)
    return np.divide(2.0 * tp, denom, out=np.zeros(len(thresholds)), where=denom > 0)


def choose_thresholds(
    scores: Any, targets: Any, min_positives: int = DEFAULT_MIN_POSITIVES, default: float = DEFAULT_THRESHOLD
) -> ThresholdChoice:
    """Each label's F1-maximising threshold on ``scores [N, q]`` / ``targets [N, q]`` (0/1).

    Labels with fewer than ``min_positives`` positives (at least 1 is always required) get
    ``default``. Vectorised over labels: one sort per label, F1 at every distinct score.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape or s.shape[0] == 0:
        raise ValueError(f"scores {s.shape} and targets {t.shape} must both be [N, q] with N >= 1")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; thresholds need finite scores")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("targets must be 0/1")
    t = t.astype(bool)
    n, q = s.shape
    s_cls, t_cls = np.ascontiguousarray(s.T), np.ascontiguousarray(t.T)
    order = np.argsort(-s_cls, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s_cls, order, axis=1)  # [q, N] descending
    tps = np.cumsum(np.take_along_axis(t_cls, order, axis=1), axis=1)
    positives = tps[:, -1]
    group_end = np.ones((q, n), dtype=bool)  # last of a run of equal scores
    group_end[:, :-1] = s_sorted[:, 1:] != s_sorted[:, :-1]
    predicted = np.arange(1, n + 1)[None, :]
    f1 = np.where(group_end, 2.0 * tps / (predicted + positives[:, None]), -1.0)
    best = np.argmax(f1, axis=1)  # first maximum: the highest cut-off
    rows = np.arange(q)
    lowest_kept = s_sorted[rows, best]
    below = s_sorted[rows, np.minimum(best + 1, n - 1)]
    mid = (lowest_kept + below) / 2.0
    chosen = np.where((best + 1 < n) & (mid > below), mid, lowest_kept)
    use_f1 = positives >= max(1, int(min_positives))
    thresholds = np.where(use_f1, chosen, float(default))
    return ThresholdChoice(
        thresholds, ["f1" if u else "default" for u in use_f1], _f1_at(s, t, thresholds), positives.astype(np.int64)
    )


def thresholds_path(path: str | Path) -> Path:
    """Where the thresholds of a run folder or checkpoint live: ``RUN/thresholds.json`` (for
    ``RUN/checkpoints/*.pt`` too), else ``thresholds.json`` beside the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        return path / THRESHOLDS_FILE
    folder = path.parent
    return (folder.parent if folder.name == "checkpoints" else folder) / THRESHOLDS_FILE


def write_thresholds(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as JSON atomically (temporary file in the folder, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(json.dumps({"format": FORMAT, **payload}, indent=1, allow_nan=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_thresholds(path: str | Path, classes: list[str] | None = None) -> dict:
    """The contents of a thresholds file; with ``classes``, its class list must equal them.
    Raises ValueError naming the file when it is not a thresholds file of this format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable thresholds file ({err})") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or len(data.get("thresholds") or ()) != len(data.get("classes") or ())
    ):
        raise ValueError(f"{path}: not an mlkd thresholds file (format {FORMAT}); rerun mlkd calibrate")
    if classes is not None and list(data["classes"]) != list(classes):
        raise ValueError(f"{path}: its classes differ from the model's; rerun mlkd calibrate")
    return data
